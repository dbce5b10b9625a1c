"""The client against a scripted API: requests it sends, pagination, waits, errors."""

from __future__ import annotations

import logging

import httpx
import pytest
from tests.fakes.api import ENDPOINT, PROJECT, TOKEN, FakeApi, fault_response, instance_body

from reddwarf.client import (
    DatabaseRequest,
    Instance,
    InstanceFaulted,
    ReddwarfAPIError,
    ReddwarfClient,
    ReddwarfConnectionError,
    UserRequest,
    WaitTimeout,
)
from reddwarf.domain.secret import Secret


def test_requests_carry_token_under_the_project_prefix(client: ReddwarfClient, fake_api: FakeApi) -> None:
    fake_api.handler = lambda request: httpx.Response(200, json={"instance": instance_body("i1")})
    instance = client.get_instance("i1")
    assert instance.id == "i1"
    request = fake_api.requests[0]
    assert str(request.url) == f"{ENDPOINT}/v1.0/{PROJECT}/instances/i1"
    assert request.headers["X-Auth-Token"] == TOKEN
    assert request.headers["Accept"] == "application/json"


def test_token_is_not_in_repr(client: ReddwarfClient) -> None:
    assert TOKEN not in repr(client)


@pytest.mark.parametrize(
    "endpoint",
    [ENDPOINT, ENDPOINT + "/", ENDPOINT + "/v1.0", f"{ENDPOINT}/v1.0/{PROJECT}/"],
)
def test_trove_style_endpoints_are_accepted(endpoint: str, fake_api: FakeApi) -> None:
    fake_api.handler = lambda request: httpx.Response(200, json={"flavors": []})
    with ReddwarfClient(endpoint, TOKEN, PROJECT, transport=httpx.MockTransport(fake_api)) as client:
        client.list_flavors()
    assert fake_api.requests[0].url.path == f"/v1.0/{PROJECT}/flavors"


def test_bad_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        ReddwarfClient("dbaas.test:8779", TOKEN, PROJECT)


def test_create_sends_trove_create_body(client: ReddwarfClient, fake_api: FakeApi) -> None:
    fake_api.handler = lambda request: httpx.Response(200, json={"instance": instance_body("i1")})
    created = client.create_instance(
        "db1",
        "2",
        3,
        datastore="postgresql",
        version="15",
        databases=["app"],
        users=[UserRequest(name="alice", password=Secret("s3cret"), databases=("app",))],
    )
    assert created.status == "BUILD"
    request = fake_api.requests[0]
    assert (request.method, request.url.path) == ("POST", f"/v1.0/{PROJECT}/instances")
    assert fake_api.bodies()[0] == {
        "instance": {
            "name": "db1",
            "flavorRef": "2",
            "volume": {"size": 3},
            "datastore": {"type": "postgresql", "version": "15"},
            "databases": [{"name": "app"}],
            "users": [{"name": "alice", "password": "s3cret", "databases": [{"name": "app"}]}],
        }
    }


def test_create_sends_a_databases_character_set_and_collation(client: ReddwarfClient, fake_api: FakeApi) -> None:
    fake_api.handler = lambda request: httpx.Response(200, json={"instance": instance_body("i1")})
    shop = DatabaseRequest(name="shop", character_set="utf8mb4", collate="utf8mb4_unicode_ci")

    client.create_instance("db1", "1", 1, datastore="mariadb", databases=[shop, "plain"])

    assert fake_api.bodies()[0]["instance"]["databases"] == [
        {"name": "shop", "character_set": "utf8mb4", "collate": "utf8mb4_unicode_ci"}, {"name": "plain"},
    ]


def test_the_root_password_of_a_create_answer_is_a_secret(client: ReddwarfClient, fake_api: FakeApi) -> None:
    fake_api.handler = lambda request: httpx.Response(200, json={"instance": instance_body("i1", password="r00t")})

    created = client.create_instance("db1", "1", 1)

    assert created.root_password is not None and created.root_password.reveal() == "r00t"
    assert "r00t" not in repr(created.root_password)
    assert Instance.model_validate(instance_body("i1")).root_password is None


def test_create_without_datastore_lets_the_server_choose(client: ReddwarfClient, fake_api: FakeApi) -> None:
    fake_api.handler = lambda request: httpx.Response(200, json={"instance": instance_body("i1")})
    client.create_instance("db1", "1", 1)
    assert fake_api.bodies()[0] == {"instance": {"name": "db1", "flavorRef": "1", "volume": {"size": 1}}}


def test_user_request_hides_the_password_in_repr() -> None:
    user = UserRequest(name="alice", password=Secret("s3cret"))
    assert "s3cret" not in repr(user)


def test_actions_use_trove_routes(client: ReddwarfClient, fake_api: FakeApi) -> None:
    fake_api.handler = lambda request: httpx.Response(202)
    client.restart_instance("i1")
    client.rename_instance("i1", "new")
    client.delete_instance("i1")
    seen = [(r.method, r.url.path) for r in fake_api.requests]
    prefix = f"/v1.0/{PROJECT}/instances/i1"
    assert seen == [("POST", prefix + "/action"), ("PUT", prefix), ("DELETE", prefix)]
    assert fake_api.bodies() == [{"restart": {}}, {"instance": {"name": "new"}}, None]


def test_api_error_is_parsed(client: ReddwarfClient, fake_api: FakeApi) -> None:
    fake_api.handler = lambda request: fault_response(404, "itemNotFound", "Instance i9 could not be found.")
    with pytest.raises(ReddwarfAPIError) as caught:
        client.get_instance("i9")
    assert (caught.value.status, caught.value.fault_name) == (404, "itemNotFound")
    assert caught.value.message == "Instance i9 could not be found."


def test_connection_error_names_the_endpoint_not_the_token(fake_api: FakeApi) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(refuse))
    with pytest.raises(ReddwarfConnectionError) as caught:
        client.list_flavors()
    assert ENDPOINT in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_token_never_logged(client: ReddwarfClient, fake_api: FakeApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake_api.handler = lambda request: httpx.Response(200, json={"instance": instance_body("i1")})
    client.create_instance("db1", "1", 1)
    client.get_instance("i1")
    assert caplog.records
    assert TOKEN not in caplog.text


def _paged(pages: dict[str | None, tuple[list[str], str | None]], next_host: str = ENDPOINT) -> FakeApi:
    """Pages keyed by marker: (ids, next marker)."""

    def handler(request: httpx.Request) -> httpx.Response:
        ids, next_marker = pages[request.url.params.get("marker")]
        body: dict[str, object] = {"instances": [instance_body(i) for i in ids]}
        if next_marker is not None:
            href = f"{next_host}/v1.0/{PROJECT}/instances?limit=2&marker={next_marker}"
            body["links"] = [{"rel": "next", "href": href}]
        return httpx.Response(200, json=body)

    return FakeApi(handler=handler)


def test_one_page_unless_all() -> None:
    api = _paged({None: (["a", "b"], "b"), "b": (["c"], None)})
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    assert [i.id for i in client.list_instances(limit=2)] == ["a", "b"]
    page = client.list_instances_page(limit=2)
    assert page.next_marker == "b"


def test_all_follows_next_links_on_our_own_endpoint() -> None:
    # The next link names another host: the client must keep sending its token to its own endpoint only.
    api = _paged({None: (["a", "b"], "b"), "b": (["c", "d"], "d"), "d": (["e"], None)}, "http://evil.test")
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    assert [i.id for i in client.list_instances(limit=2, all=True)] == ["a", "b", "c", "d", "e"]
    assert {r.url.host for r in api.requests} == {"dbaas.test"}
    assert [r.url.params.get("marker") for r in api.requests] == [None, "b", "d"]
    assert all(r.url.params.get("limit") == "2" for r in api.requests)


def test_repeated_marker_stops_instead_of_looping() -> None:
    api = _paged({None: (["a"], "a"), "a": (["b"], "a")})
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    with pytest.raises(ReddwarfAPIError, match="repeated the pagination marker"):
        client.list_instances(all=True)


def _scripted(*responses: httpx.Response) -> FakeApi:
    """Answers each request with the next response; the last one repeats."""
    remaining = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return FakeApi(handler=handler)


def _instance(status: str, **extra: object) -> httpx.Response:
    return httpx.Response(200, json={"instance": instance_body("i1", status, **extra)})


def test_wait_returns_when_active_and_reports_each_poll() -> None:
    api = _scripted(_instance("BUILD"), _instance("BUILD"), _instance("ACTIVE", operating_status="HEALTHY"))
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    seen: list[str] = []
    instance = client.wait_for_instance("i1", timeout=10, on_poll=lambda i: seen.append(i.status), interval=0)
    assert instance.status == "ACTIVE"
    assert seen == ["BUILD", "BUILD", "ACTIVE"]


def test_waits_poll_at_most_the_clients_poll_interval_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr("reddwarf.client.http.time.sleep", pauses.append)
    api = _scripted(*[_instance("BUILD")] * 4, _instance("ACTIVE"), _instance("SHUTDOWN"),
                    fault_response(404, "itemNotFound", "gone"))
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, poll_interval=0.5, transport=httpx.MockTransport(api))

    client.wait_for_instance("i1", timeout=10)
    client.wait_for_delete("i1", timeout=10)

    assert pauses == [0.25, 0.5, 0.5, 0.5, 0.25]


def test_wait_raises_with_the_fault_on_error() -> None:
    fault = {"message": "initdb failed: disk full", "details": "see log", "created": "2026-11-22T11:33:00"}
    api = _scripted(_instance("BUILD"), _instance("ERROR", fault=fault))
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    with pytest.raises(InstanceFaulted, match="initdb failed: disk full") as caught:
        client.wait_for_instance("i1", timeout=10, interval=0)
    assert caught.value.instance.fault is not None
    assert caught.value.instance.fault.details == "see log"


def test_wait_times_out_with_the_last_status() -> None:
    api = _scripted(_instance("BUILD"))
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    with pytest.raises(WaitTimeout, match="last status BUILD") as caught:
        client.wait_for_instance("i1", timeout=0.05, interval=0.01)
    assert caught.value.instance is not None


def test_wait_rides_out_a_brief_api_outage() -> None:
    outage = fault_response(503, "serviceUnavailable", "store unreachable")
    api = _scripted(outage, outage, _instance("ACTIVE"))
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    assert client.wait_for_instance("i1", timeout=10, interval=0).status == "ACTIVE"


def test_wait_for_instance_stops_on_404() -> None:
    api = _scripted(fault_response(404, "itemNotFound", "gone"))
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    with pytest.raises(ReddwarfAPIError, match="gone"):
        client.wait_for_instance("i1", timeout=10, interval=0)


def test_wait_for_delete_ends_on_404() -> None:
    api = _scripted(_instance("SHUTDOWN"), _instance("SHUTDOWN"), fault_response(404, "itemNotFound", "gone"))
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    client.wait_for_delete("i1", timeout=10, interval=0)
    assert len(api.requests) == 3


def test_wait_for_delete_of_a_failed_instance_ignores_its_old_fault() -> None:
    old = {"message": "old failure", "details": "", "created": "2026-11-22T11:00:00"}
    api = _scripted(
        _instance("ERROR", fault=old), _instance("ERROR", fault=old), fault_response(404, "itemNotFound", "x")
    )
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    client.wait_for_delete("i1", timeout=10, interval=0)


def test_wait_for_delete_fails_on_a_new_fault() -> None:
    new = {"message": "could not remove the data directory", "details": "", "created": "2026-11-22T12:00:00"}
    api = _scripted(_instance("SHUTDOWN"), _instance("ERROR", fault=new))
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    with pytest.raises(InstanceFaulted, match="could not remove the data directory"):
        client.wait_for_delete("i1", timeout=10, interval=0)


def test_catalogue_models() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/flavors"):
            return httpx.Response(
                200, json={"flavors": [{"id": 2, "name": "small", "ram": 1024, "vcpus": 1, "links": []}]}
            )
        if request.url.path.endswith("/versions"):
            return httpx.Response(
                200, json={"versions": [{"id": "v15", "name": "15", "version": "15.18", "active": True}]}
            )
        return httpx.Response(
            200,
            json={
                "datastores": [
                    {
                        "id": "ds",
                        "name": "postgresql",
                        "default_version": "v15",
                        "versions": [{"id": "v15", "name": "15", "links": []}],
                        "links": [],
                    }
                ]
            },
        )

    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(handler))
    [flavor] = client.list_flavors()
    assert (flavor.id, flavor.name, flavor.ram) == ("2", "small", 1024)
    [datastore] = client.list_datastores()
    assert datastore.default_version_name == "15"
    [version] = client.list_datastore_versions("postgresql")
    assert version.version == "15.18"


def test_wire_gives_back_what_the_server_sent() -> None:
    body = instance_body("i1", "ACTIVE", created="2026-11-22T11:33:00", future_field={"x": 1})
    api = FakeApi(handler=lambda request: httpx.Response(200, json={"instance": body}))
    client = ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))
    assert client.get_instance("i1").wire() == body

"""Trove's database, user, grant and root routes against a fake engine: every route, status code, view and
refusal, with the durable writes run by an in-process worker."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from test_api_accounts_support import AccountsApi, build_accounts_api
from tests.fakes.engines import ADMIN, FakeAccounts

from reddwarf.domain.accounts import UserInfo
from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import DatabaseSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement


@pytest.fixture
def acc(tmp_path: Path, store_template: Path) -> Iterator[AccountsApi]:
    yield from build_accounts_api(tmp_path, store_template)


def user_path(name: str, host: str | None = None) -> str:
    """As troveclient's `quote_user_host` builds it."""
    return quote(f"{name}@{host}" if host else name).replace(".", "%2e")


def fault(response: object, name: str, code: int) -> str:
    assert response.status_code == code, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {name}
    assert body[name]["code"] == code
    return str(body[name]["message"])


# -- databases ----------------------------------------------------------------------------------------


def test_databases_create_list_show_delete(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    assert api.get(f"/instances/{iid}/databases").json() == {"databases": []}

    response = api.post(f"/instances/{iid}/databases",
                        {"databases": [{"name": "app", "character_set": "UTF8", "collate": "C"}, {"name": "b"}]})
    assert response.status_code == 202, response.text
    assert response.content == b""
    assert ("instance.databases.create", "pending") in api.operations(iid)
    acc.drain()

    assert api.get(f"/instances/{iid}/databases").json() == {"databases": [{"name": "app"}, {"name": "b"}]}
    shown = api.get(f"/instances/{iid}/databases/app")
    assert shown.status_code == 200
    assert shown.json() == {"database": {"name": "app", "character_set": "UTF8", "collate": "C"}}

    assert api.delete(f"/instances/{iid}/databases/b").status_code == 202
    acc.drain()
    assert api.get(f"/instances/{iid}/databases").json() == {"databases": [{"name": "app"}]}
    assert ("instance.databases.delete", "done") in api.operations(iid)


def test_databases_paginate_with_trove_links(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/databases", {"databases": [{"name": n} for n in ("c", "a", "b")]})
    acc.drain()
    first = api.get(f"/instances/{iid}/databases", params={"limit": 2}).json()
    assert first["databases"] == [{"name": "a"}, {"name": "b"}]
    (link,) = first["links"]
    assert link["rel"] == "next" and "marker=b" in link["href"] and "limit=2" in link["href"]
    second = api.get(f"/instances/{iid}/databases", params={"limit": 2, "marker": "b"}).json()
    assert second == {"databases": [{"name": "c"}]}


def test_database_refusals(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/databases", {"databases": [{"name": "app"}]})
    acc.drain()
    assert "already exists" in fault(api.post(f"/instances/{iid}/databases", {"databases": [{"name": "app"}]}),
                                     "badRequest", 400)
    assert "listed twice" in fault(
        api.post(f"/instances/{iid}/databases", {"databases": [{"name": "x"}, {"name": "x"}]}), "badRequest", 400)
    assert "must not contain ';'" in fault(
        api.post(f"/instances/{iid}/databases", {"databases": [{"name": "a;b"}]}), "badRequest", 400)
    assert "databases" in fault(api.post(f"/instances/{iid}/databases", {"databases": []}), "badRequest", 400)
    assert "databases" in fault(api.post(f"/instances/{iid}/databases", {}), "badRequest", 400)
    assert "could not be found" in fault(api.get(f"/instances/{iid}/databases/nope"), "itemNotFound", 404)
    fault(api.delete(f"/instances/{iid}/databases/nope"), "itemNotFound", 404)
    fault(api.get("/instances/no-such-instance/databases"), "itemNotFound", 404)
    fault(api.get(f"/instances/{iid}/databases", who="other", project=api.other_project), "itemNotFound", 404)
    assert [k for k, _ in api.operations(iid)].count("instance.databases.create") == 1


def test_instance_not_active_is_422(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    with api.db.unit_of_work() as uow:
        uow.instances.record(iid, Observation.CREATING, "built again", generation=0)
    for response in (
        api.get(f"/instances/{iid}/databases"),
        api.post(f"/instances/{iid}/databases", {"databases": [{"name": "a"}]}),
        api.get(f"/instances/{iid}/users"),
        api.post(f"/instances/{iid}/root", None),
    ):
        assert "not ready" in fault(response, "unprocessableEntity", 422)


def test_unreachable_server_is_503_for_reads(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    acc.engines["postgresql"].server(iid).reachable = False
    message = fault(api.get(f"/instances/{iid}/users"), "serviceUnavailable", 503)
    assert "did not answer" in message and "connection refused" not in message  # no engine detail, no path


def test_a_server_that_did_not_answer_is_not_asked_again_for_a_while(
    acc: AccountsApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, iid = acc.api, acc.active_instance()
    engine = acc.engines["postgresql"]
    asked: list[str] = []
    original = engine.accounts

    def counted(placement: Placement, admin_password: Secret) -> FakeAccounts:
        asked.append(placement.instance_id)
        return original(placement, admin_password)

    monkeypatch.setattr(engine, "accounts", counted)
    engine.server(iid).reachable = False
    assert "did not answer" in fault(api.get(f"/instances/{iid}/users"), "serviceUnavailable", 503)
    assert "not answering" in fault(api.get(f"/instances/{iid}/databases"), "serviceUnavailable", 503)
    assert "not answering" in fault(api.post(f"/instances/{iid}/root", None), "serviceUnavailable", 503)
    assert asked == [iid]  # one timeout's worth, not one per request


@pytest.fixture
def capped(tmp_path: Path, store_template: Path) -> Iterator[AccountsApi]:
    yield from build_accounts_api(tmp_path, store_template, live_reads_per_project=2)


def test_live_reads_in_flight_are_capped_per_project(capped: AccountsApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api, iid = capped.api, capped.active_instance()
    entered, release = threading.Semaphore(0), threading.Event()
    original = FakeAccounts.list_users

    def hanging(self: FakeAccounts) -> list[UserInfo]:
        entered.release()
        release.wait(30)
        return original(self)

    monkeypatch.setattr(FakeAccounts, "list_users", hanging)
    results: list[int] = []

    def read() -> None:
        results.append(api.get(f"/instances/{iid}/users").status_code)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for _ in readers:
            assert entered.acquire(timeout=30), "a live read never reached the server"
        assert "Too many" in fault(api.get(f"/instances/{iid}/users"), "serviceUnavailable", 503)
    finally:
        release.set()
        for reader in readers:
            reader.join(30)
    assert results == [200, 200]
    assert api.get(f"/instances/{iid}/users").status_code == 200  # the slots were given back


def test_redis_has_no_databases_or_grants(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance("redis")
    for response in (
        api.get(f"/instances/{iid}/databases"),
        api.post(f"/instances/{iid}/databases", {"databases": [{"name": "a"}]}),
        api.delete(f"/instances/{iid}/databases/a"),
        api.get(f"/instances/{iid}/users/alice/databases"),
        api.put(f"/instances/{iid}/users/alice/databases", {"databases": [{"name": "a"}]}),
        api.delete(f"/instances/{iid}/users/alice/databases/a"),
        api.post(f"/instances/{iid}/users", {"users": [{"name": "u", "password": "p", "databases": [{"name": "a"}]}]}),
    ):
        assert "not supported by redis" in fault(response, "badRequest", 400)
    assert api.operations(iid) == [("instance.create", "superseded")]
    assert api.post(f"/instances/{iid}/users", {"users": [{"name": "u", "password": "p"}]}).status_code == 202
    acc.drain()
    assert api.get(f"/instances/{iid}/users").json()["users"] == [{"name": "u", "host": "%", "databases": []}]


# -- users --------------------------------------------------------------------------------------------


def test_users_create_list_show_with_host_and_grants(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/databases", {"databases": [{"name": "app"}, {"name": "b"}]})
    acc.drain()
    response = api.post(f"/instances/{iid}/users", {"users": [
        {"name": "alice", "password": "s3cret", "databases": [{"name": "app"}]},
        {"name": "bob.x", "password": "pw2", "host": "10.0.0.1"},
    ]})
    assert response.status_code == 202, response.text
    acc.drain()

    users = api.get(f"/instances/{iid}/users").json()["users"]
    assert users == [
        {"name": "alice", "host": "%", "databases": [{"name": "app"}]},
        {"name": "bob.x", "host": "10.0.0.1", "databases": []},
    ]
    shown = api.get(f"/instances/{iid}/users/{user_path('bob.x', '10.0.0.1')}")
    assert shown.status_code == 200
    assert shown.json() == {"user": {"name": "bob.x", "host": "10.0.0.1", "databases": []}}
    assert api.get(f"/instances/{iid}/users/alice").json()["user"]["name"] == "alice"
    fault(api.get(f"/instances/{iid}/users/bob%2ex"), "itemNotFound", 404)  # host % by default
    server = acc.engines["postgresql"].server(iid)
    assert server.users[("alice", "%")][0].reveal() == "s3cret"


def test_passwords_never_in_payloads_and_forgotten_after_the_operation(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/users", {"users": [{"name": "alice", "password": "PASSWORD-XYZZY"}]})
    with sqlite3.connect(api.db_path) as raw:
        (op_id, payload), = raw.execute(
            "SELECT id, payload FROM operations WHERE kind = 'instance.users.create'").fetchall()
    assert "PASSWORD-XYZZY" not in json.dumps(payload)
    assert api.count("secrets", "owner_id = ?", op_id) == 1
    assert b"PASSWORD-XYZZY" not in api.db_path.read_bytes()
    acc.drain()
    assert api.count("secrets", "owner_id = ?", op_id) == 0


def test_admin_account_is_invisible_and_untouchable(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    server = acc.engines["postgresql"].server(iid)
    from reddwarf.domain.secret import Secret
    server.users[(ADMIN, "%")] = (Secret("admin"), set())
    assert api.get(f"/instances/{iid}/users").json()["users"] == []
    fault(api.get(f"/instances/{iid}/users/{ADMIN}"), "itemNotFound", 404)
    fault(api.delete(f"/instances/{iid}/users/{ADMIN}"), "itemNotFound", 404)
    fault(api.put(f"/instances/{iid}/users/{ADMIN}", {"user": {"password": "x"}}), "itemNotFound", 404)
    fault(api.put(f"/instances/{iid}/users", {"users": [{"name": ADMIN, "password": "x"}]}), "itemNotFound", 404)
    assert "reserved" in fault(
        api.post(f"/instances/{iid}/users", {"users": [{"name": ADMIN, "password": "x"}]}), "badRequest", 400)
    assert api.operations(iid) == [("instance.create", "superseded")]


def test_user_refusals(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/users", {"users": [{"name": "alice", "password": "pw"}]})
    acc.drain()
    users = f"/instances/{iid}/users"
    assert "already exists" in fault(api.post(users, {"users": [{"name": "alice", "password": "x"}]}),
                                     "badRequest", 400)
    assert "listed twice" in fault(api.post(users, {"users": [{"name": "z", "password": "x"}] * 2}),
                                   "badRequest", 400)
    assert "password" in fault(api.post(users, {"users": [{"name": "z", "password": ""}]}), "badRequest", 400)
    assert "password" in fault(api.post(users, {"users": [{"name": "z"}]}), "badRequest", 400)
    assert "must not contain ';'" in fault(api.post(users, {"users": [{"name": "a;b", "password": "x"}]}),
                                           "badRequest", 400)
    assert "must not contain '!'" in fault(api.post(users, {"users": [{"name": "z", "password": "x!"}]}),
                                           "badRequest", 400)
    fault(api.post(users, {"users": [{"name": "z", "password": "x", "databases": [{"name": "nope"}]}]}),
          "itemNotFound", 404)
    fault(api.delete(f"{users}/nobody"), "itemNotFound", 404)
    fault(api.put(f"{users}/nobody", {"user": {"password": "x"}}), "itemNotFound", 404)
    assert "at least one" in fault(api.put(f"{users}/alice", {"user": {}}), "badRequest", 400)
    assert "surname" in fault(api.put(f"{users}/alice", {"user": {"surname": "x"}}), "badRequest", 400)
    fault(api.put(users, {"users": [{"name": "nobody", "password": "x"}]}), "itemNotFound", 404)
    assert [k for k, _ in api.operations(iid)].count("instance.users.create") == 1


def test_update_renames_rehosts_and_sets_password(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/users",
             {"users": [{"name": "alice", "password": "pw"}, {"name": "bob", "password": "b"}]})
    acc.drain()
    assert "already exists" in fault(api.put(f"/instances/{iid}/users/alice", {"user": {"name": "bob"}}),
                                     "badRequest", 400)
    response = api.put(f"/instances/{iid}/users/alice",
                       {"user": {"name": "carol", "host": "10.0.0.2", "password": "new"}})
    assert response.status_code == 202, response.text
    acc.drain()
    server = acc.engines["postgresql"].server(iid)
    assert ("alice", "%") not in server.users
    assert server.users[("carol", "10.0.0.2")][0].reveal() == "new"
    fault(api.get(f"/instances/{iid}/users/alice"), "itemNotFound", 404)


def test_bulk_password_change(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/users", {"users": [{"name": "a", "password": "1"}, {"name": "b", "password": "2"}]})
    acc.drain()
    response = api.put(f"/instances/{iid}/users", {"users": [{"name": "a", "password": "x"},
                                                             {"name": "b", "password": "y", "host": "%"}]})
    assert response.status_code == 202, response.text
    acc.drain()
    server = acc.engines["postgresql"].server(iid)
    assert server.users[("a", "%")][0].reveal() == "x"
    assert server.users[("b", "%")][0].reveal() == "y"


def test_delete_user(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/users", {"users": [{"name": "a", "password": "1", "host": "10.0.0.1"}]})
    acc.drain()
    assert api.delete(f"/instances/{iid}/users/{user_path('a', '10.0.0.1')}").status_code == 202
    acc.drain()
    assert api.get(f"/instances/{iid}/users").json() == {"users": []}


def test_grants_list_grant_revoke(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/databases", {"databases": [{"name": "a"}, {"name": "b"}]})
    api.post(f"/instances/{iid}/users", {"users": [{"name": "u", "password": "1"}]})
    acc.drain()
    access = f"/instances/{iid}/users/u/databases"
    assert api.get(access).json() == {"databases": []}
    assert api.put(access, {"databases": [{"name": "a"}, {"name": "b"}]}).status_code == 202
    acc.drain()
    assert api.get(access).json() == {"databases": [{"name": "a"}, {"name": "b"}]}
    assert api.delete(f"{access}/a").status_code == 202
    acc.drain()
    assert api.get(access).json() == {"databases": [{"name": "b"}]}
    fault(api.delete(f"{access}/a"), "itemNotFound", 404)
    fault(api.put(access, {"databases": [{"name": "nope"}]}), "itemNotFound", 404)
    fault(api.get(f"/instances/{iid}/users/nobody/databases"), "itemNotFound", 404)
    fault(api.put(access, {"databases": []}), "badRequest", 400)


def test_writes_run_in_request_order(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/databases", {"databases": [{"name": "a"}]})
    api.post(f"/instances/{iid}/users", {"users": [{"name": "u", "password": "1"}]})
    acc.drain()
    api.put(f"/instances/{iid}/users/u", {"user": {"password": "2"}})
    api.put(f"/instances/{iid}/users/u/databases", {"databases": [{"name": "a"}]})
    acc.drain()
    calls = acc.engines["postgresql"].server(iid).calls
    assert calls == ["create_databases", "create_users", "update_user", "grant"]


def test_writes_are_judged_as_if_the_writes_accepted_before_them_were_applied(acc: AccountsApi) -> None:
    """Nothing applied yet (the worker has not run): each write is checked against the live state with the
    earlier accepted writes replayed, so a user may get access to a database whose create is queued."""
    api, iid = acc.api, acc.active_instance()
    assert api.post(f"/instances/{iid}/databases", {"databases": [{"name": "d1"}]}).status_code == 202
    created = api.post(f"/instances/{iid}/users",
                       {"users": [{"name": "u1", "password": "1", "databases": [{"name": "d1"}]}]})
    assert created.status_code == 202, created.text
    assert api.delete(f"/instances/{iid}/users/u1/databases/d1").status_code == 202
    assert "d1" in fault(api.delete(f"/instances/{iid}/users/u1/databases/d1"), "itemNotFound", 404)
    assert "already exists" in fault(api.post(f"/instances/{iid}/databases", {"databases": [{"name": "d1"}]}),
                                     "badRequest", 400)
    assert api.delete(f"/instances/{iid}/users/u1").status_code == 202
    assert "u1" in fault(api.put(f"/instances/{iid}/users/u1/databases", {"databases": [{"name": "d1"}]}),
                         "itemNotFound", 404)
    acc.drain()
    server = acc.engines["postgresql"].server(iid)
    assert server.calls == ["create_databases", "create_users", "revoke", "delete_user"]
    assert set(server.databases) == {"d1"} and ("u1", "%") not in server.users


def test_a_write_waits_until_applied_and_a_refusal_in_time_is_a_422(
    tmp_path: Path, store_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: FakeAccounts, users: object) -> None:
        raise PermanentError("too many roles on this server")

    monkeypatch.setattr(FakeAccounts, "create_users", refuse)
    for waiting in build_accounts_api(tmp_path, store_template, account_write_wait=20.0):
        api, iid = waiting.api, waiting.active_instance()
        stop = threading.Event()
        runner = threading.Thread(target=waiting.worker.run, args=(stop,), daemon=True)
        runner.start()
        try:
            assert api.post(f"/instances/{iid}/databases", {"databases": [{"name": "a"}]}).status_code == 202
            assert "a" in waiting.engines["postgresql"].server(iid).databases  # applied before the answer
            refused = api.post(f"/instances/{iid}/users", {"users": [{"name": "u", "password": "1"}]})
            assert "too many roles" in fault(refused, "unprocessableEntity", 422)
            assert api.get(f"/instances/{iid}").json()["instance"]["status"] == "ACTIVE"
        finally:
            stop.set()
            runner.join(10)


def test_a_refused_write_records_a_fault_but_the_instance_stays_active(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/databases", {"databases": [{"name": "a"}]})
    acc.drain()
    api.post(f"/instances/{iid}/users", {"users": [{"name": "u", "password": "1", "databases": [{"name": "a"}]}]})
    acc.engines["postgresql"].server(iid).databases.clear()  # dropped behind Reddwarf's back meanwhile
    acc.drain()
    view = api.get(f"/instances/{iid}").json()["instance"]
    assert view["status"] == "ACTIVE"
    assert view["fault"]["message"].startswith("Creating users failed:")
    assert ("instance.users.create", "failed") in api.operations(iid)
    assert api.count("secrets", "owner_id NOT IN (SELECT id FROM instances)") == 0


def test_changes_to_create_users_are_mirrored_for_the_health_probe(acc: AccountsApi) -> None:
    api = acc.api
    iid = acc.active_instance(databases=[{"name": "app"}],
                              users=[{"name": "alice", "password": "old", "databases": [{"name": "app"}]}])
    server = acc.engines["postgresql"].server(iid)
    from reddwarf.domain.secret import Secret
    server.databases["app"] = DatabaseSpec("app")
    server.users[("alice", "%")] = (Secret("old"), {"app"})
    api.put(f"/instances/{iid}/users/alice", {"user": {"name": "alicia", "password": "new"}})
    acc.drain()
    with api.db.unit_of_work(write=False) as uow:
        instance = uow.instances.get(iid)
    assert instance is not None
    (user,) = instance.spec.users
    assert (user.name, user.password.reveal(), user.databases) == ("alicia", "new", ("app",))
    api.delete(f"/instances/{iid}/databases/app")
    acc.drain()
    with api.db.unit_of_work(write=False) as uow:
        instance = uow.instances.get(iid)
    assert instance is not None and instance.spec.users[0].databases == ()


@pytest.mark.parametrize("name", ["o'brien", 'dq"uote', "back\\slash", "ünï©ødé", "spa ce", "pct%x@y"])
def test_awkward_user_names_work_literally(acc: AccountsApi, name: str) -> None:
    api, iid = acc.api, acc.active_instance()
    password = "p'\";\\ü"
    assert api.post(f"/instances/{iid}/users", {"users": [{"name": name, "password": password}]}).status_code == 202
    acc.drain()
    shown = api.get(f"/instances/{iid}/users/{user_path(name, '%')}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["user"]["name"] == name
    assert acc.engines["postgresql"].server(iid).users[(name, "%")][0].reveal() == password


# -- root ---------------------------------------------------------------------------------------------


def test_root_status_enable_disable_and_history(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    history = f"/mgmt/instances/{iid}/root"
    assert api.get(history, who="admin", project=api.admin_project).json() == {
        "root_history": {"id": iid, "enabled": "Never", "user": "Nobody"}}
    assert api.get(f"/instances/{iid}/root").json() == {"rootEnabled": False}
    fault(api.delete(f"/instances/{iid}/root"), "itemNotFound", 404)

    enabled = api.post(f"/instances/{iid}/root", None)
    assert enabled.status_code == 200, enabled.text
    user = enabled.json()["user"]
    assert user["name"] == "root" and len(user["password"]) >= 20
    assert acc.engines["postgresql"].server(iid).root_password.reveal() == user["password"]  # type: ignore[union-attr]
    assert api.get(f"/instances/{iid}/root").json() == {"rootEnabled": True}
    assert user["password"].encode() not in api.db_path.read_bytes()

    given = api.post(f"/instances/{iid}/root", {"password": "my own"})
    assert given.json() == {"user": {"name": "root", "password": "my own"}}

    record = api.get(history, who="admin", project=api.admin_project).json()["root_history"]
    assert record["id"] == iid and record["enabled"] != "Never" and record["user"] != "Nobody"
    fault(api.get(history), "forbidden", 403)

    disabled = api.delete(f"/instances/{iid}/root")
    assert disabled.status_code == 204 and disabled.content == b""
    assert api.get(f"/instances/{iid}/root").json() == {"rootEnabled": False}
    assert api.get(history, who="admin", project=api.admin_project).json()["root_history"]["enabled"] != "Never"
    assert "password" in fault(api.post(f"/instances/{iid}/root", {"password": ""}), "badRequest", 400)


def test_root_needs_the_capability(acc: AccountsApi) -> None:
    from reddwarf.domain.capabilities import Capability
    api, iid = acc.api, acc.active_instance()
    acc.engines["postgresql"].offered = frozenset({Capability.USERS, Capability.DATABASES})
    assert "not supported by postgresql" in fault(api.post(f"/instances/{iid}/root", None), "badRequest", 400)
    fault(api.get(f"/instances/{iid}/root"), "badRequest", 400)

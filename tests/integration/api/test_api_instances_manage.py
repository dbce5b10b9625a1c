"""Show, list (pagination), rename, delete, restart and reset_status on instances, with project scoping."""

from __future__ import annotations

from urllib.parse import urlsplit

from api_support import Api, create_body

from reddwarf.domain.conditions import Observation
from reddwarf.domain.status import Fault, InstanceStatus


def _set_status(api: Api, instance_id: str, status: InstanceStatus, fault: Fault | None = None) -> None:
    """What a reconciler would record for the instance to be ACTIVE (ready) or ERROR (failed, with `fault`)."""
    observation = {InstanceStatus.ACTIVE: Observation.READY, InstanceStatus.ERROR: Observation.FAILED}[status]
    with api.db.unit_of_work() as uow:
        uow.instances.record(instance_id, observation, "set by the test", generation=0, fault=fault)


def test_show_returns_the_detail_view(api: Api, new_instance: str) -> None:
    response = api.get(f"/instances/{new_instance}")

    assert response.status_code == 200
    instance = response.json()["instance"]
    assert instance["id"] == new_instance
    assert {"created", "updated", "volume", "datastore"} <= set(instance)
    assert instance["datastore"]["version_number"] == "16.4"


def test_show_includes_fault_used_volume_and_address_once_recorded(api: Api, new_instance: str) -> None:
    from reddwarf.domain.instance import Endpoint

    with api.db.unit_of_work() as uow:
        uow.instances.record(
            new_instance, Observation.FAILED, "initdb failed", generation=0,
            fault=Fault(message="initdb failed", details="exit 1", created=api.clock.now),
            volume_used_bytes=512 * 1024 * 1024,
        )
        uow.instances.set_endpoint(new_instance, Endpoint("127.0.1.7", 5432))

    instance = api.get(f"/instances/{new_instance}").json()["instance"]

    assert instance["status"] == "ERROR"
    assert instance["fault"]["message"] == "initdb failed"
    assert instance["fault"]["details"] == "exit 1"
    assert instance["volume"]["used"] == 0.5
    assert instance["ip"] == ["127.0.1.7"]
    assert instance["addresses"] == [{"address": "127.0.1.7", "type": "private", "network": "reddwarf"}]
    assert instance["port"] == 5432


def test_another_project_instance_is_404_not_403(api: Api, new_instance: str) -> None:
    response = api.get(f"/instances/{new_instance}", who="other", project=api.other_project)

    assert response.status_code == 404
    assert "itemNotFound" in response.json()
    assert api.delete(f"/instances/{new_instance}", who="other", project=api.other_project).status_code == 404
    assert api.operations(new_instance) == [("instance.create", "pending")]


def test_an_admin_reaches_another_project_instance_by_id(api: Api, new_instance: str) -> None:
    response = api.get(f"/instances/{new_instance}", who="admin", project=api.admin_project)

    assert response.status_code == 200
    assert response.json()["instance"]["tenant_id"] == api.project


def test_lists_show_only_the_own_project(api: Api, new_instance: str) -> None:
    assert [i["id"] for i in api.get("/instances").json()["instances"]] == [new_instance]
    assert api.get("/instances", who="other", project=api.other_project).json() == {"instances": []}


def test_summary_list_omits_detail_fields_and_detail_list_has_them(api: Api, new_instance: str) -> None:
    summary = api.get("/instances?include_clustered=false").json()["instances"][0]
    detail = api.get("/instances/detail").json()["instances"][0]

    assert "created" not in summary and "updated" not in summary
    assert "version_number" not in summary["datastore"]
    assert detail["created"] and detail["datastore"]["version_number"] == "16.4"


def test_pagination_follows_next_links_to_the_end(api: Api) -> None:
    ids = []
    for n in range(5):
        api.clock.now += 1
        ids.append(api.post("/instances", create_body(name=f"db{n}")).json()["instance"]["id"])

    seen: list[str] = []
    body = api.get("/instances?limit=2").json()
    pages = 1
    while True:
        seen += [i["id"] for i in body["instances"]]
        if "links" not in body:
            break
        (link,) = body["links"]
        assert link["rel"] == "next"
        parts = urlsplit(link["href"])
        body = api.client.get(f"{parts.path}?{parts.query}", headers=api.headers()).json()
        pages += 1

    assert seen == ids
    assert pages == 3


def test_bad_limit_and_unknown_marker_are_400(api: Api, new_instance: str) -> None:
    assert "limit" in api.get("/instances?limit=0").json()["badRequest"]["message"]
    assert "limit" in api.get("/instances?limit=many").json()["badRequest"]["message"]
    assert "marker" in api.get("/instances?marker=nope").json()["badRequest"]["message"]


def test_rename_is_202_and_changes_the_name(api: Api, new_instance: str) -> None:
    response = api.put(f"/instances/{new_instance}", {"instance": {"name": "renamed"}})

    assert response.status_code == 202
    assert api.get(f"/instances/{new_instance}").json()["instance"]["name"] == "renamed"


def test_update_of_other_attributes_is_400_naming_them(api: Api, new_instance: str) -> None:
    for field, value in [("configuration", "c1"), ("datastore_version", "15"),
                         ("access", {"is_public": True})]:
        response = api.put(f"/instances/{new_instance}", {"instance": {"name": "n", field: value}})
        assert response.status_code == 400
        assert field in response.json()["badRequest"]["message"]
    assert api.get(f"/instances/{new_instance}").json()["instance"]["name"] == "db1"


def test_rename_to_a_bad_name_is_400(api: Api, new_instance: str) -> None:
    response = api.put(f"/instances/{new_instance}", {"instance": {"name": ""}})

    assert response.status_code == 400
    assert "name" in response.json()["badRequest"]["message"]


def test_delete_enqueues_a_delete_and_supersedes_the_create(api: Api, new_instance: str) -> None:
    response = api.delete(f"/instances/{new_instance}")

    assert response.status_code == 202
    assert api.operations(new_instance) == [("instance.create", "superseded"), ("instance.delete", "pending")]
    assert api.count("instances", "id = ? AND deleting", new_instance) == 1


def test_deleting_twice_is_202_with_one_delete_operation(api: Api, new_instance: str) -> None:
    assert api.delete(f"/instances/{new_instance}").status_code == 202
    assert api.delete(f"/instances/{new_instance}").status_code == 202

    assert [op for op in api.operations(new_instance) if op[0] == "instance.delete"] == [
        ("instance.delete", "pending")
    ]


def test_delete_of_an_unknown_instance_is_404(api: Api) -> None:
    response = api.delete("/instances/no-such-id")

    assert response.status_code == 404
    assert "no-such-id" in response.json()["itemNotFound"]["message"]


def test_restart_is_422_unless_active(api: Api, new_instance: str) -> None:
    response = api.post(f"/instances/{new_instance}/action", {"restart": {}})

    assert response.status_code == 422
    assert "ACTIVE" in response.json()["unprocessableEntity"]["message"]
    assert api.operations(new_instance) == [("instance.create", "pending")]


def test_restart_of_an_active_instance_enqueues_one_restart(api: Api, new_instance: str) -> None:
    _set_status(api, new_instance, InstanceStatus.ACTIVE)

    assert api.post(f"/instances/{new_instance}/action", {"restart": {}}).status_code == 202
    assert api.post(f"/instances/{new_instance}/action", {"restart": {}}).status_code == 202

    assert api.operations(new_instance).count(("instance.restart", "pending")) == 1


def test_reset_status_is_admin_only(api: Api, new_instance: str) -> None:
    response = api.post(f"/instances/{new_instance}/action", {"reset_status": {}})

    assert response.status_code == 403
    assert "forbidden" in response.json()


def test_reset_status_asks_the_reconcilers_and_leaves_status_to_them(api: Api, new_instance: str) -> None:
    _set_status(api, new_instance, InstanceStatus.ERROR, Fault("boom", "", api.clock.now))

    response = api.post(f"/instances/{new_instance}/action", {"reset_status": {}}, who="admin",
                        project=api.admin_project)

    assert response.status_code == 202
    # Status and fault are the reconciler's to write: the service only makes sure one will run. The
    # create never finished here, so the create (already queued) is what brings the instance back.
    view = api.get(f"/instances/{new_instance}").json()["instance"]
    assert view["status"] == "ERROR" and view["fault"]["message"] == "boom"
    assert api.operations(new_instance).count(("instance.create", "pending")) == 1


def test_unknown_or_ambiguous_actions_are_400_naming_the_key(api: Api, new_instance: str) -> None:
    unknown = api.post(f"/instances/{new_instance}/action", {"resize": {"flavorRef": "2"}})
    two = api.post(f"/instances/{new_instance}/action", {"restart": {}, "reset_status": {}})
    none = api.post(f"/instances/{new_instance}/action", {})

    assert unknown.status_code == 400 and "resize" in unknown.json()["badRequest"]["message"]
    assert two.status_code == 400 and none.status_code == 400
    assert api.operations(new_instance) == [("instance.create", "pending")]

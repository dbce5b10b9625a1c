"""POST /instances: what a valid create records, and that every bad input is refused by name, creating nothing."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import Api, create_body

from reddwarf.domain.catalog import datastore_version_id


def test_create_answers_200_with_the_detail_view_in_build(api: Api) -> None:
    response = api.post("/instances", create_body(datastore={"type": "postgresql", "version": "15"}))

    assert response.status_code == 200
    instance = response.json()["instance"]
    assert instance["status"] == "BUILD"
    assert instance["name"] == "db1"
    assert instance["flavor"]["id"] == "1"
    assert instance["datastore"] == {"type": "postgresql", "version": "15", "version_number": "15.8"}
    assert instance["volume"] == {"size": 1}
    assert instance["region"] == "RegionOne"
    assert instance["access"] == {"is_public": False, "allowed_cidrs": []}
    assert instance["replicas"] == []
    assert instance["created"] == instance["updated"] == "2026-11-18T11:06:40"
    assert "ip" not in instance and "tenant_id" not in instance
    assert instance["links"][0]["href"].endswith(f"/v1.0/{api.project}/instances/{instance['id']}")


def test_create_writes_one_build_row_one_create_operation_and_an_admin_password(api: Api) -> None:
    response = api.post("/instances", create_body())
    instance_id = response.json()["instance"]["id"]

    assert api.count("instances") == 1
    assert api.count("instances", "id = ? AND status = 'BUILD'", instance_id) == 1
    assert api.operations() == [("instance.create", "pending")]
    assert api.operations(instance_id) == [("instance.create", "pending")]
    with api.db.unit_of_work(write=False) as uow:
        admin = uow.secrets.get(instance_id, "admin")
    assert admin is not None and len(admin.reveal()) == 32


def test_create_without_datastore_uses_the_default_and_its_newest_active_version(api: Api) -> None:
    instance = api.post("/instances", create_body()).json()["instance"]

    assert instance["datastore"]["type"] == "postgresql"
    assert instance["datastore"]["version"] == "16"


def test_create_accepts_trove_whole_schema_with_ignored_fields(api: Api) -> None:
    body = create_body(
        flavorRef="http://dbaas:8779/v1.0/p/flavors/2",
        volume={"size": "2", "type": "fast"},
        datastore={"type": "postgresql", "version": datastore_version_id("postgresql", "15"),
                   "version_number": "15.8"},
        databases=[{"name": "app", "character_set": "utf8", "collate": "en_US.utf8"}],
        users=[{"name": "alice", "password": "s3cret-pw", "host": "%", "databases": [{"name": "app"}]}],
        nics=[{"net-id": "abc"}],
        availability_zone="nova",
        region_name="elsewhere",
        locality="affinity",
        modules=[],
        access={"is_public": True},
    )
    response = api.post("/instances", body)

    assert response.status_code == 200, response.text
    instance = response.json()["instance"]
    assert instance["flavor"]["id"] == "2"
    assert instance["volume"]["size"] == 2
    assert instance["datastore"]["version"] == "15"
    assert instance["region"] == "RegionOne"
    assert b"s3cret-pw" not in api.db_path.read_bytes()


def test_the_tenant_password_is_never_echoed(api: Api) -> None:
    body = create_body(users=[{"name": "alice", "password": "s3cret-pw"}])
    response = api.post("/instances", body)

    assert response.status_code == 200
    assert "s3cret-pw" not in response.text


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str, str]] = [
    # (case, create body overrides, status, fault, text the message must contain)
    ("empty name", {"name": ""}, 400, "badRequest", "name"),
    ("blank name", {"name": "   "}, 400, "badRequest", "name"),
    ("long name", {"name": "x" * 256}, 400, "badRequest", "name"),
    ("control chars in name", {"name": "db\x07one"}, 400, "badRequest", "name"),
    ("name not a string", {"name": 12}, 400, "badRequest", "instance.name"),
    ("missing volume", {"volume": None}, 400, "badRequest", "volume.size"),
    ("missing volume size", {"volume": {}}, 400, "badRequest", "volume.size"),
    ("zero volume", {"volume": {"size": 0}}, 400, "badRequest", "volume.size"),
    ("negative volume", {"volume": {"size": -3}}, 400, "badRequest", "volume.size"),
    ("float volume", {"volume": {"size": 1.5}}, 400, "badRequest", "instance.volume.size"),
    ("text volume", {"volume": {"size": "big"}}, 400, "badRequest", "instance.volume.size"),
    ("bool volume", {"volume": {"size": True}}, 400, "badRequest", "instance.volume.size"),
    ("volume over max", {"volume": {"size": 11}}, 400, "badRequest", "volume.size"),
    ("unknown flavor", {"flavorRef": "99"}, 404, "itemNotFound", "Flavor 99"),
    ("flavor of wrong type", {"flavorRef": [1]}, 400, "badRequest", "instance.flavorRef"),
    ("missing flavor", {"flavorRef": None}, 400, "badRequest", "flavorRef is required"),
    ("unknown datastore", {"datastore": {"type": "oracle"}}, 404, "itemNotFound", "oracle"),
    ("unknown version", {"datastore": {"type": "postgresql", "version": "9"}}, 404, "itemNotFound", "9"),
    ("wrong version number", {"datastore": {"version": "15", "version_number": "15.1"}}, 404, "itemNotFound",
     "15.1"),
    ("inactive version", {"datastore": {"version": "14"}}, 400, "badRequest", "datastore.version"),
    ("engine refuses user", {"users": [{"name": "postgres", "password": "pw"}]}, 400, "badRequest",
     "users[0].name"),
    ("user password missing", {"users": [{"name": "alice"}]}, 400, "badRequest", "instance.users[0].password"),
    ("user password empty", {"users": [{"name": "alice", "password": ""}]}, 400, "badRequest",
     "users[0].password"),
    ("restorePoint of no backup", {"restorePoint": {"backupRef": "b1"}}, 404, "itemNotFound", "Backup b1"),
    ("replica_of with a flavor", {"replica_of": "i1"}, 400, "badRequest", "Cannot specify flavor"),
    ("replica_count without replica_of", {"replica_count": 2}, 400, "badRequest", "Replica count only valid"),
    ("configuration", {"configuration": "c1"}, 400, "badRequest", "configuration"),
    ("modules", {"modules": [{"id": "m1"}]}, 400, "badRequest", "modules"),
    ("allowed_cidrs", {"access": {"allowed_cidrs": ["10.0.0.0/8"]}}, 400, "badRequest", "access.allowed_cidrs"),
    ("two nics", {"nics": [{"net-id": "a"}, {"net-id": "b"}]}, 400, "badRequest", "instance.nics"),
    ("unknown locality", {"locality": "near"}, 400, "badRequest", "instance.locality"),
    ("unknown top-level key", {"flavour": "1"}, 400, "badRequest", "instance.flavour"),
    ("duplicate database", {"databases": [{"name": "a"}, {"name": "a"}]}, 400, "badRequest", "databases[1].name"),
]


@pytest.mark.parametrize(
    ("overrides", "status", "fault", "names"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_refused_by_name_and_creates_nothing(
    api: Api, overrides: dict[str, Any], status: int, fault: str, names: str
) -> None:
    body = create_body(**overrides)
    body["instance"] = {k: v for k, v in body["instance"].items() if v is not None}

    response = api.post("/instances", body)

    assert response.status_code == status, response.text
    assert list(response.json()) == [fault]
    assert response.json()[fault]["code"] == status
    assert names in response.json()[fault]["message"]
    assert api.count("instances") == 0
    assert api.operations() == []
    assert api.count("secrets") == 0


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [(b'{"instance": {', "application/json"), (b"[1, 2]", "application/json"), (b"", "application/json")],
    ids=["truncated json", "not an object", "empty body"],
)
def test_malformed_bodies_are_400_bad_request(api: Api, raw: bytes, content_type: str) -> None:
    response = api.client.post(
        api.url("/instances"), content=raw, headers={**api.headers(), "Content-Type": content_type}
    )

    assert response.status_code == 400
    assert "badRequest" in response.json()
    assert "detail" not in response.json()
    assert api.count("instances") == 0


def test_missing_instance_key_names_it(api: Api) -> None:
    response = api.post("/instances", {"name": "db1"})

    assert response.status_code == 400
    assert "instance" in response.json()["badRequest"]["message"]


def test_quota_refuses_the_instance_over_the_limit(tmp_path: Any, store_template: Any) -> None:
    from api_support import build_api

    for api in build_api(tmp_path, template=store_template):
        object.__setattr__(api.ctx, "max_instances_per_project", 1)
        assert api.post("/instances", create_body()).status_code == 200

        response = api.post("/instances", create_body(name="db2"))

        assert response.status_code == 413
        assert "instances" in response.json()["overLimit"]["message"]
        assert api.count("instances") == 1
        assert len(api.operations()) == 1


def test_a_form_body_is_415_bad_media_type_and_creates_nothing(api: Api) -> None:
    response = api.client.post(
        api.url("/instances"), content=b'{"instance": {"name": "db1"}}',
        headers={**api.headers(), "Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 415
    fault = response.json()["badMediaType"]
    assert fault["code"] == 415 and "application/json" in fault["message"]
    assert response.headers["X-OpenStack-Request-Id"].startswith("req-")
    assert api.count("instances") == 0

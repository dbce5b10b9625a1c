"""Versions, health, datastores, flavors, the OpenAPI document, and the error boundary (404/405/500)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import Api, build_api
from tests.fakes.engines import FakeEngine

from reddwarf.domain.catalog import datastore_id, datastore_version_id


def test_root_lists_v1_0(api: Api) -> None:
    (version,) = api.client.get("/").json()["versions"]

    assert version["id"] == "v1.0" and version["status"] == "CURRENT"
    assert version["updated"] == "2012-08-01T00:00:00Z"
    assert version["links"][0]["href"].endswith("/v1.0/")
    assert api.client.get("/v1.0/").json()["version"]["id"] == "v1.0"


def test_healthcheck_is_ok_then_503_when_the_store_is_gone(api: Api) -> None:
    ok = api.client.get("/healthcheck")
    assert (ok.status_code, ok.text) == (200, "OK")

    api.db.dispose()
    api.db_path.unlink()
    api.db_path.mkdir()  # a directory where the database file was: nothing can open it

    assert api.client.get("/healthcheck").status_code == 503


def test_datastores_list_shows_active_versions_newest_first(api: Api) -> None:
    (datastore,) = api.get("/datastores").json()["datastores"]

    assert datastore["id"] == datastore_id("postgresql")
    assert datastore["name"] == "postgresql"
    assert datastore["default_version"] == datastore_version_id("postgresql", "16")
    assert [v["name"] for v in datastore["versions"]] == ["16", "15"]
    assert datastore["versions"][0]["version"] == "16.4"


def test_admins_also_see_inactive_versions(api: Api) -> None:
    (datastore,) = api.get("/datastores", who="admin", project=api.admin_project).json()["datastores"]

    assert [(v["name"], v["active"]) for v in datastore["versions"]] == [
        ("16", True), ("15", True), ("14", False)
    ]


@pytest.mark.parametrize("ident", ["postgresql", datastore_id("postgresql")])
def test_datastore_by_name_or_id(api: Api, ident: str) -> None:
    assert api.get(f"/datastores/{ident}").json()["datastore"]["name"] == "postgresql"


def test_versions_of_a_datastore_and_one_version_by_name_id_or_uuid(api: Api) -> None:
    versions = api.get("/datastores/postgresql/versions").json()["versions"]
    by_name = api.get("/datastores/postgresql/versions/15").json()["version"]
    vid = datastore_version_id("postgresql", "15")
    by_id = api.get(f"/datastores/postgresql/versions/{vid}").json()["version"]
    by_uuid = api.get(f"/datastores/versions/{vid}").json()["version"]

    assert [v["name"] for v in versions] == ["16", "15"]
    assert by_name == by_id == by_uuid
    assert by_name["id"] == vid
    assert by_name["datastore"] == datastore_id("postgresql")
    assert by_name["version"] == by_name["version_number"] == "15.8"
    assert by_name["active"] is True
    assert {"image", "packages", "links"} <= set(by_name)


@pytest.mark.parametrize("path", ["/datastores/oracle", "/datastores/postgresql/versions/9",
                                  "/datastores/versions/00000000-0000-0000-0000-000000000000"])
def test_unknown_datastores_and_versions_are_404(api: Api, path: str) -> None:
    response = api.get(path)

    assert response.status_code == 404
    assert "itemNotFound" in response.json()


def test_flavors_in_trove_format(api: Api) -> None:
    flavors = api.get("/flavors").json()["flavors"]
    flavor = api.get("/flavors/2").json()["flavor"]

    assert [f["id"] for f in flavors] == ["1", "2", "3", "4"]
    assert flavor["id"] == flavor["str_id"] == "2"
    assert (flavor["name"], flavor["ram"], flavor["vcpus"]) == ("small", 1024, 1)
    assert flavor["links"][0]["href"].endswith(f"/v1.0/{api.project}/flavors/2")
    assert api.get("/flavors/99").status_code == 404


def test_unknown_route_and_wrong_method_are_trove_faults_with_a_request_id(api: Api) -> None:
    missing = api.get("/no-such-resource")
    wrong = api.client.delete(api.url("/flavors"), headers=api.headers())

    assert missing.status_code == 404 and "itemNotFound" in missing.json()
    assert wrong.status_code == 405 and wrong.json()["badMethod"]["code"] == 405
    assert missing.headers["X-OpenStack-Request-Id"] != wrong.headers["X-OpenStack-Request-Id"]


class BrokenEngine(FakeEngine):
    def versions(self) -> list:  # type: ignore[type-arg]
        raise RuntimeError("secret internal detail")


@pytest.fixture
def broken_api(tmp_path: Path, store_template: Path) -> Iterator[Api]:
    yield from build_api(tmp_path, template=store_template, engines={"postgresql": BrokenEngine()})


def test_an_unexpected_error_is_a_generic_500_instance_fault_and_is_logged(
    broken_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    response = broken_api.get("/datastores")

    assert response.status_code == 500
    assert response.json()["instanceFault"]["code"] == 500
    assert "secret internal detail" not in response.text
    request_id = response.headers["X-OpenStack-Request-Id"]
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any(request_id in r.getMessage() and r.exc_info for r in logged)


def test_openapi_describes_routes_with_tags_and_summaries(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()

    create = spec["paths"]["/v1.0/{project_id}/instances"]["post"]
    assert create["tags"] == ["instances"] and create["summary"] == "Create an instance"
    assert {t["name"] for t in spec["tags"]} >= {"instances", "datastores", "flavors", "versions"}
    assert "X-Auth-Token" in str(spec["components"]["securitySchemes"])
    assert "/v1.0/{project_id}/datastores/{datastore}/versions/{version}" in spec["paths"]

"""Datastore capabilities and classification in the API, and the operator's `hide_experimental`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import Api, build_api, create_body

from reddwarf.services.classification import Result, Run, append_runs

ALL_PASSED = {"lifecycle": Result.PASSED, "users": Result.PASSED, "databases": Result.PASSED}


def write_ledger(path: Path) -> Path:
    """postgresql 16: technical preview (one passing run); 15: only its lifecycle passed (experimental)."""
    append_runs(path, [
        Run(commit="c1", date="2026-01-01T00:00:00Z", engine="postgresql", version="16", runtime="local",
            declared=("databases", "users"), results=ALL_PASSED),
        Run(commit="c1", date="2026-01-01T00:00:00Z", engine="postgresql", version="15", runtime="local",
            declared=("databases", "users"), results={**ALL_PASSED, "databases": Result.FAILED}),
    ])
    return path


@pytest.fixture
def classified(tmp_path: Path, store_template: Path) -> Iterator[Api]:
    ledger = write_ledger(tmp_path / "ledger.jsonl")
    yield from build_api(tmp_path, template=store_template, classification_ledger=ledger)


@pytest.fixture
def hiding(tmp_path: Path, store_template: Path) -> Iterator[Api]:
    ledger = write_ledger(tmp_path / "ledger.jsonl")
    yield from build_api(tmp_path, template=store_template, classification_ledger=ledger, hide_experimental=True)


def test_versions_show_capabilities_strategies_and_classification(classified: Api) -> None:
    v16 = classified.get("/datastores/postgresql/versions/16").json()["version"]
    v15 = classified.get("/datastores/postgresql/versions/15").json()["version"]
    listed = classified.get("/datastores/postgresql/versions").json()["versions"]

    assert v16["capabilities"] == ["databases", "users"]
    assert v16["strategies"] == {"backup": [], "replication": []}
    assert v16["classification"] == "technical_preview"
    assert v15["classification"] == "experimental"
    assert [(v["name"], v["classification"]) for v in listed] == [("16", "technical_preview"),
                                                                   ("15", "experimental")]


def test_a_datastore_shows_its_default_versions_classification(classified: Api) -> None:
    (datastore,) = classified.get("/datastores").json()["datastores"]

    assert datastore["classification"] == "technical_preview"
    assert classified.get("/datastores/postgresql").json()["datastore"]["classification"] == "technical_preview"


def test_without_a_ledger_entry_a_version_is_experimental(tmp_path: Path, store_template: Path) -> None:
    for api in build_api(tmp_path, template=store_template, classification_ledger=tmp_path / "none.jsonl"):
        assert api.get("/datastores/postgresql/versions/16").json()["version"]["classification"] == "experimental"


def test_capabilities_route_uses_troves_legacy_shape(classified: Api) -> None:
    response = classified.get("/datastores/postgresql/versions/16/capabilities")

    assert response.status_code == 200
    capabilities = response.json()["capabilities"]
    assert {"id", "name", "description", "enabled"} == set(capabilities[0])
    enabled = {c["name"] for c in capabilities if c["enabled"]}
    assert enabled == {"users", "databases"}
    assert {"backup", "replication", "root"} <= {c["name"] for c in capabilities if not c["enabled"]}
    assert classified.get("/datastores/postgresql/versions/9/capabilities").status_code == 404


def test_experimental_versions_are_shown_when_not_hidden(classified: Api) -> None:
    versions = classified.get("/datastores/postgresql/versions").json()["versions"]
    response = classified.post("/instances", create_body(datastore={"type": "postgresql", "version": "15"}))

    assert [v["name"] for v in versions] == ["16", "15"]
    assert response.status_code == 200, response.text


def test_hide_experimental_hides_them_from_tenants_as_if_absent(hiding: Api) -> None:
    (datastore,) = hiding.get("/datastores").json()["datastores"]
    versions = hiding.get("/datastores/postgresql/versions").json()["versions"]
    shown = hiding.get("/datastores/postgresql/versions/15")
    capabilities = hiding.get("/datastores/postgresql/versions/15/capabilities")
    create = hiding.post("/instances", create_body(datastore={"type": "postgresql", "version": "15"}))
    written = hiding.count("instances")
    default = hiding.post("/instances", create_body(datastore={"type": "postgresql"}))

    assert [v["name"] for v in datastore["versions"]] == ["16"]
    assert [v["name"] for v in versions] == ["16"]
    assert shown.status_code == 404 and "itemNotFound" in shown.json()
    assert capabilities.status_code == 404
    assert create.status_code == 404, create.text
    assert written == 0
    assert default.status_code == 200, default.text
    assert default.json()["instance"]["datastore"]["version"] == "16"


def test_hide_experimental_does_not_hide_anything_from_admins(hiding: Api) -> None:
    (datastore,) = hiding.get("/datastores", who="admin", project=hiding.admin_project).json()["datastores"]
    shown = hiding.get("/datastores/postgresql/versions/15", who="admin", project=hiding.admin_project)

    assert [v["name"] for v in datastore["versions"]] == ["16", "15", "14"]
    assert shown.status_code == 200
    assert shown.json()["version"]["classification"] == "experimental"


def test_a_datastore_whose_versions_are_all_hidden_is_absent(tmp_path: Path, store_template: Path) -> None:
    for api in build_api(tmp_path, template=store_template, classification_ledger=tmp_path / "none.jsonl",
                         hide_experimental=True):
        assert api.get("/datastores").json()["datastores"] == []
        assert api.get("/datastores/postgresql").status_code == 404
        assert api.post("/instances", create_body()).status_code == 404

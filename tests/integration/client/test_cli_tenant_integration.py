"""The tenant CLI and the client against the real API app over HTTP (SQLite store, fake engine)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from client_server import ApiServer
from tests.fakes.worker import FAULT_MESSAGE, FakeWorker
from typer.testing import CliRunner

from reddwarf.cli import tenant
from reddwarf.client import ReddwarfAPIError, ReddwarfClient
from reddwarf.identity.tokens import issue_token

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(tenant.instance_app, name="instance")
    app.add_typer(tenant.datastore_app, name="datastore")
    app.add_typer(tenant.flavor_app, name="flavor")
    return app


def _run(server: ApiServer, *args: str, input: str | None = None) -> Any:
    """Run the CLI as the admin of the bootstrap project, credentials found in the state dir."""
    argv = [*args, "--endpoint", server.endpoint, "--state-dir", str(server.state_dir)]
    return runner.invoke(_app(), argv, input=input)


def _json(server: ApiServer, *args: str) -> Any:
    result = _run(server, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_create_list_show_delete(api_server: ApiServer) -> None:
    result = _run(
        api_server,
        "instance",
        "create",
        "orders",
        "--flavor",
        "small",
        "--size",
        "2",
        "--datastore",
        "postgresql",
        "--version",
        "15",
        "--database",
        "shop",
        "--user",
        "app:shop",
        "--password-stdin",
        "--json",
        input="app-password\n",
    )
    assert result.exit_code == 0, result.output
    assert "app-password" not in result.output
    created = json.loads(result.stdout)
    assert created["name"] == "orders"
    assert created["status"] == "BUILD"
    assert created["flavor"]["id"] == "2"
    assert created["volume"]["size"] == 2
    assert created["datastore"]["type"] == "postgresql"
    instance_id = created["id"]

    listed = _json(api_server, "instance", "list")
    assert [item["id"] for item in listed] == [instance_id]

    table = _run(api_server, "instance", "list")
    assert table.exit_code == 0, table.output
    assert instance_id in table.stdout and "orders" in table.stdout

    shown = _json(api_server, "instance", "show", instance_id)
    assert shown["id"] == instance_id
    assert shown["datastore"]["version"] == "15"

    detail = _run(api_server, "instance", "show", instance_id)
    assert detail.exit_code == 0, detail.output
    assert "BUILD" in detail.stdout and instance_id in detail.stdout

    deleted = _json(api_server, "instance", "delete", instance_id)
    assert deleted == {"id": instance_id, "action": "delete", "accepted": True, "deleted": False}
    # Deleting is recorded at once: the instance is still listed until a worker removes it.
    assert [item["id"] for item in _json(api_server, "instance", "list")] == [instance_id]


def test_unknown_instance_exits_1_with_the_fault(api_server: ApiServer) -> None:
    result = _run(api_server, "instance", "show", "00000000-0000-4000-8000-000000000000")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error (404 itemNotFound): ")
    assert "00000000-0000-4000-8000-000000000000" in result.stderr
    assert result.stdout == ""


def test_refused_create_exits_1_naming_the_problem(api_server: ApiServer) -> None:
    result = _run(api_server, "instance", "create", "db", "--flavor", "nope", "--size", "1")
    assert result.exit_code == 1
    assert "Error (404 itemNotFound)" in result.stderr
    assert "nope" in result.stderr

    too_big = _run(api_server, "instance", "create", "db", "--flavor", "1", "--size", "1000")
    assert too_big.exit_code == 1
    assert "Error (400 badRequest)" in too_big.stderr
    assert "volume" in too_big.stderr.lower()
    assert _json(api_server, "instance", "list") == []


def test_restart_of_an_instance_in_build_is_refused(api_server: ApiServer) -> None:
    created = _json(api_server, "instance", "create", "db", "--flavor", "1", "--size", "1")
    result = _run(api_server, "instance", "restart", created["id"])
    assert result.exit_code == 1
    assert "Error (422 unprocessableEntity)" in result.stderr


def test_wait_until_active_then_restart_rename_and_wait_for_delete(api_server: ApiServer) -> None:
    with FakeWorker(api_server.db):
        created = _json(api_server, "instance", "create", "db", "--flavor", "1", "--size", "1", "--wait")
        assert created["status"] == "ACTIVE"
        assert created["operating_status"] == "HEALTHY"
        instance_id = created["id"]

        assert _run(api_server, "instance", "restart", instance_id).exit_code == 0
        renamed = _run(api_server, "instance", "rename", instance_id, "db2")
        assert renamed.exit_code == 0, renamed.output
        assert _json(api_server, "instance", "show", instance_id)["name"] == "db2"

        deleted = _run(api_server, "instance", "delete", instance_id, "--wait")
        assert deleted.exit_code == 0, deleted.output
        assert f"Instance {instance_id} deleted." in deleted.stdout
    assert _json(api_server, "instance", "list") == []


def test_wait_exits_1_with_the_fault_on_error(api_server: ApiServer) -> None:
    with FakeWorker(api_server.db):
        result = _run(api_server, "instance", "create", "doomed", "--flavor", "1", "--size", "1", "--wait")
    assert result.exit_code == 1
    assert FAULT_MESSAGE in result.stderr
    assert result.stdout == ""


def test_catalogue_commands(api_server: ApiServer) -> None:
    [datastore] = _json(api_server, "datastore", "list")
    assert datastore["name"] == "postgresql"
    assert [v["name"] for v in datastore["versions"]] == ["15"]
    versions = _json(api_server, "datastore", "versions", "postgresql")
    assert versions[0]["name"] == "15"
    flavors = _json(api_server, "flavor", "list")
    assert {f["name"] for f in flavors} >= {"tiny", "small"}

    table = _run(api_server, "datastore", "list")
    assert table.exit_code == 0 and "postgresql" in table.stdout
    table = _run(api_server, "flavor", "list")
    assert table.exit_code == 0 and "small" in table.stdout


def test_wrong_token_exits_1_unauthorized(api_server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDDWARF_TOKEN", "not-a-token")
    result = _run(api_server, "flavor", "list", "--project", api_server.admin_project)
    assert result.exit_code == 1
    assert "Error (401 unauthorized)" in result.stderr
    assert "not-a-token" not in result.output


def test_tenant_token_sees_only_its_project(api_server: ApiServer) -> None:
    with api_server.db.unit_of_work() as uow:
        project = uow.identity.create_project("tenant-a")
    _, token = issue_token(api_server.db, project.id, ("member",), ttl=3600)
    _json(api_server, "instance", "create", "admin-db", "--flavor", "1", "--size", "1")
    with ReddwarfClient(api_server.endpoint, token, project.id) as client:
        assert client.list_instances(all=True) == []
        mine = client.create_instance("tenant-db", "1", 1)
        assert [i.id for i in client.list_instances(all=True)] == [mine.id]
    with (
        pytest.raises(ReddwarfAPIError) as caught,
        ReddwarfClient(api_server.endpoint, token, api_server.admin_project) as wrong_project,
    ):
        wrong_project.list_flavors()
    assert (caught.value.status, caught.value.fault_name) == (403, "forbidden")


def test_pagination_is_followed_against_the_real_api(api_server: ApiServer) -> None:
    token = api_server.admin_token
    with ReddwarfClient(api_server.endpoint, token, api_server.admin_project) as client:
        ids = [client.create_instance(f"db{n}", "1", 1).id for n in range(5)]
        first = client.list_instances_page(limit=2)
        assert [i.id for i in first.instances] == ids[:2]
        assert first.next_marker == ids[1]
        assert [i.id for i in client.list_instances(limit=2, all=True)] == ids
    listed = _json(api_server, "instance", "list")
    assert [item["id"] for item in listed] == ids

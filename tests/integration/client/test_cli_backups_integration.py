"""The backup commands and the backups client against the real API app over HTTP (SQLite store, fake engine,
`FakeWorker` settling the operations as the reconcilers would): routes, filters, pagination, restores."""

from __future__ import annotations

import json
from typing import Any

import typer
from client_server import ApiServer
from tests.fakes.worker import BACKUP_BYTES, BACKUP_FAULT_MESSAGE, FakeWorker
from typer.testing import CliRunner

from reddwarf.cli import backups as backups_cli
from reddwarf.cli import tenant
from reddwarf.client import ReddwarfClient

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(backups_cli.backup_app, name="backup")
    app.add_typer(tenant.instance_app, name="instance")
    return app


def _run(server: ApiServer, *args: str) -> Any:
    """Run the CLI as the admin of the bootstrap project, credentials found in the state dir."""
    return runner.invoke(_app(), [*args, "--endpoint", server.endpoint, "--state-dir", str(server.state_dir)])


def _json(server: ApiServer, *args: str) -> Any:
    result = _run(server, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_backup_list_show_restore_and_delete(api_server: ApiServer) -> None:
    with FakeWorker(api_server.db):
        source = _json(api_server, "instance", "create", "orders", "--flavor", "1", "--size", "1", "--wait")["id"]
        other = _json(api_server, "instance", "create", "other", "--flavor", "1", "--size", "1", "--wait")["id"]

        full = _json(api_server, "backup", "create", "nightly", "--instance", source, "--description", "first",
                     "--wait")
        assert (full["status"], full["instance_id"], full["description"]) == ("COMPLETED", source, "first")
        assert full["progress"] == {"bytes_done": BACKUP_BYTES, "phase": "done"}
        assert full["datastore"]["type"] == "postgresql" and full["datastore"]["version"] == "15"

        table = _run(api_server, "backup", "create", "weekly", "--instance", other, "--wait")
        assert table.exit_code == 0, table.output
        assert "COMPLETED" in table.stdout and "3.0 MiB" in table.stdout  # uncompressed_size

        assert [b["id"] for b in _json(api_server, "backup", "list", "--instance", source)] == [full["id"]]
        assert len(_json(api_server, "backup", "list")) == 2
        assert _json(api_server, "backup", "list", "--datastore", "mariadb") == []
        assert _json(api_server, "backup", "show", full["id"])["name"] == "nightly"

        restored = _json(api_server, "instance", "create", "orders-copy", "--flavor", "1", "--size", "1",
                         "--backup", full["id"], "--wait")
        assert restored["status"] == "ACTIVE"
        with api_server.db.unit_of_work(write=False) as uow:
            copy = uow.instances.get(restored["id"])
            assert copy is not None and copy.spec.restore_backup_id == full["id"]

        deleted = _run(api_server, "backup", "delete", full["id"], "--wait")
        assert deleted.exit_code == 0, deleted.output
        assert f"Backup {full['id']} deleted." in deleted.stdout
        gone = _run(api_server, "backup", "show", full["id"])
        assert gone.exit_code == 1 and "Error (404 itemNotFound)" in gone.stderr
        # A backup outlives its instance, and the restored instance does not need its backup any more.
        assert [b["name"] for b in _json(api_server, "backup", "list")] == ["weekly"]


def test_a_failed_backup_exits_1_with_its_fault(api_server: ApiServer) -> None:
    with FakeWorker(api_server.db):
        source = _json(api_server, "instance", "create", "orders", "--flavor", "1", "--size", "1", "--wait")["id"]
        result = _run(api_server, "backup", "create", "doomed-nightly", "--instance", source, "--wait")
    assert result.exit_code == 1
    assert f"is FAILED: {BACKUP_FAULT_MESSAGE}" in result.stderr
    assert result.stdout == ""
    [failed] = _json(api_server, "backup", "list")
    assert failed["fault"]["message"] == BACKUP_FAULT_MESSAGE


def test_refusals_exit_1_naming_the_problem(api_server: ApiServer) -> None:
    building = _json(api_server, "instance", "create", "orders", "--flavor", "1", "--size", "1")["id"]
    not_active = _run(api_server, "backup", "create", "nightly", "--instance", building)
    assert not_active.exit_code == 1 and "Error (422 unprocessableEntity)" in not_active.stderr

    unknown = "00000000-0000-4000-8000-000000000000"
    missing = _run(api_server, "backup", "create", "nightly", "--instance", unknown)
    assert missing.exit_code == 1 and "Error (404 itemNotFound)" in missing.stderr

    restore = _run(api_server, "instance", "create", "copy", "--flavor", "1", "--size", "1", "--backup", unknown)
    assert restore.exit_code == 1 and "Error (404 itemNotFound)" in restore.stderr and unknown in restore.stderr
    assert _json(api_server, "backup", "list") == []


def test_pagination_is_followed_against_the_real_api(api_server: ApiServer) -> None:
    with FakeWorker(api_server.db), ReddwarfClient(
        api_server.endpoint, api_server.admin_token, api_server.admin_project, poll_interval=0.05
    ) as client:
        source = client.wait_for_instance(client.create_instance("orders", "1", 1).id, timeout=30).id
        ids = []
        for n in range(5):
            backup = client.backups.create_backup(f"b{n}", source)
            ids.append(client.backups.wait_for_backup(backup.id, timeout=30).id)
        first = client.backups.list_backups_page(limit=2)
        assert [b.id for b in first.backups] == ids[:2] and first.next_marker == ids[1]
        assert [b.id for b in client.backups.list_backups(source, limit=2)] == ids
    assert [b["id"] for b in _json(api_server, "backup", "list")] == ids

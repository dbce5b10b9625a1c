"""The backup commands (and `instance create --backup`) against a scripted API: requests, output, exit codes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import typer
from tests.fakes.api import BACKUP_ID, ENDPOINT, PROJECT, TOKEN, FakeApi, backup_body, fault_response, instance_body
from typer.testing import CliRunner

from reddwarf.cli import backups as backups_cli
from reddwarf.cli import tenant
from reddwarf.client import Backup, ReddwarfClient

runner = CliRunner()
FAULT = {"message": "pg_basebackup exited 1: could not connect", "details": "see the log",
         "created": "2026-11-22T11:33:00"}
FLAVORS = {"flavors": [{"id": "2", "name": "small", "ram": 1024, "vcpus": 1, "links": []}]}


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(backups_cli.backup_app, name="backup")
    app.add_typer(tenant.instance_app, name="instance")
    return app


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """Every client the CLI builds talks to this scripted API; the environment holds the credentials."""
    fake = FakeApi(handler=lambda request: fault_response(404, "itemNotFound", "nothing here"))

    def make_client(endpoint: str, token: Any, project_id: str) -> ReddwarfClient:
        return ReddwarfClient(endpoint, token, project_id, poll_interval=0.01, transport=httpx.MockTransport(fake))

    monkeypatch.setattr(tenant, "ReddwarfClient", make_client)
    monkeypatch.setenv("REDDWARF_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("REDDWARF_TOKEN", TOKEN)
    monkeypatch.setenv("REDDWARF_PROJECT", PROJECT)
    return fake


def _polls(*states: dict[str, Any]) -> Any:
    """POST answers NEW; each GET the next state (the last repeats)."""
    remaining = list(states)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json={"backup": backup_body()})
        state = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return httpx.Response(200, json={"backup": backup_body(**state)})

    return handler


def test_create_sends_the_options_and_prints_the_new_backup(api: FakeApi) -> None:
    api.handler = _polls({"status": "NEW"})
    args = ["backup", "create", "nightly", "--instance", "i1", "--description", "before the upgrade", "--parent",
            "p1", "--json"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "NEW"
    assert api.bodies() == [
        {"backup": {"name": "nightly", "instance": "i1", "description": "before the upgrade", "parent_id": "p1"}}
    ]

    result = runner.invoke(_app(), ["backup", "create", "hourly", "--instance", "i1", "--incremental"])
    assert result.exit_code == 0, result.output
    assert api.bodies()[-1] == {"backup": {"name": "hourly", "instance": "i1", "incremental": 1}}
    assert BACKUP_ID in result.stdout and "NEW" in result.stdout


def test_create_wait_shows_the_progress_and_prints_the_completed_backup(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.handler = _polls(
        {"status": "BUILDING", "progress": {"bytes_done": 0, "phase": "preparing"}},
        {"status": "BUILDING", "progress": {"bytes_done": 5 << 20, "phase": "streaming"}},
        {"status": "COMPLETED", "size": 0.002, "uncompressed_size": 0.01,
         "progress": {"bytes_done": 10 << 20, "phase": "done"}},
    )
    seen: list[tuple[str, int]] = []
    update = backups_cli.BackupProgressDisplay.update

    def spy(self: backups_cli.BackupProgressDisplay, backup: Backup) -> None:
        assert backup.progress is not None
        seen.append((backup.progress.phase, backup.progress.bytes_done))
        update(self, backup)

    monkeypatch.setattr(backups_cli.BackupProgressDisplay, "update", spy)
    result = runner.invoke(_app(), ["backup", "create", "nightly", "--instance", "i1", "--wait"])
    assert result.exit_code == 0, result.output
    assert seen == [("preparing", 0), ("streaming", 5 << 20), ("done", 10 << 20)]
    assert "COMPLETED" in result.stdout
    assert "10.2 MiB" in result.stdout  # uncompressed_size 0.01 GB
    assert "progress" not in result.stdout  # only while it runs


def test_create_wait_exits_1_with_the_fault(api: FakeApi) -> None:
    api.handler = _polls({"status": "BUILDING"}, {"status": "FAILED", "fault": FAULT})
    result = runner.invoke(_app(), ["backup", "create", "nightly", "--instance", "i1", "--wait", "--json"])
    assert result.exit_code == 1
    assert "is FAILED: pg_basebackup exited 1: could not connect" in result.stderr
    assert "see the log" in result.stderr
    assert result.stdout == ""


def test_a_refused_create_exits_1(api: FakeApi) -> None:
    api.handler = lambda request: fault_response(422, "unprocessableEntity", "already being backed up")
    result = runner.invoke(_app(), ["backup", "create", "nightly", "--instance", "i1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error (422 unprocessableEntity): already being backed up")


def test_list_sends_the_filters_and_shows_every_backup(api: FakeApi) -> None:
    ids = [f"b0000000-0000-4000-8000-00000000000{n}" for n in range(3)]
    api.handler = lambda request: httpx.Response(
        200, json={"backups": [backup_body(i, "COMPLETED", size=0.5, parent_id=ids[0] if i != ids[0] else None)
                               for i in ids]})
    result = runner.invoke(_app(), ["backup", "list", "--instance", "i1", "--datastore", "postgresql"])
    assert result.exit_code == 0, result.output
    assert dict(api.requests[0].url.params) == {"instance_id": "i1", "datastore": "postgresql"}
    for backup_id in ids:
        assert backup_id in result.stdout
    assert "512.0 MiB" in result.stdout

    listed = runner.invoke(_app(), ["backup", "list", "--all-projects", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [b["id"] for b in json.loads(listed.stdout)] == ids
    assert dict(api.requests[-1].url.params) == {"all_projects": "true"}


def test_show_prints_the_progress_while_it_runs_and_the_fault_when_it_failed(api: FakeApi) -> None:
    api.handler = lambda request: httpx.Response(200, json={"backup": backup_body(
        status="BUILDING", progress={"bytes_done": 3 << 20, "phase": "streaming"})})
    result = runner.invoke(_app(), ["backup", "show", BACKUP_ID])
    assert result.exit_code == 0, result.output
    assert "streaming, 3.0 MiB streamed" in result.stdout

    api.handler = lambda request: httpx.Response(200, json={"backup": backup_body(status="FAILED", fault=FAULT)})
    result = runner.invoke(_app(), ["backup", "show", BACKUP_ID])
    assert "FAILED" in result.stdout and "could not connect" in result.stdout and "see the log" in result.stdout

    api.handler = lambda request: httpx.Response(200, json={"backup": backup_body(
        status="COMPLETED", verified=False, verified_at="2026-12-04T17:00:00",
        verification="verification failed: index t_pkey is corrupt")})
    result = runner.invoke(_app(), ["backup", "show", BACKUP_ID])
    assert result.exit_code == 0, result.output
    assert "verified" in result.stdout and "NO" in result.stdout and "t_pkey is corrupt" in result.stdout

    api.handler = lambda request: fault_response(404, "itemNotFound", f"Backup {BACKUP_ID} could not be found.")
    result = runner.invoke(_app(), ["backup", "show", BACKUP_ID, "--json"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error (404 itemNotFound)") and result.stdout == ""


def test_delete_and_wait_until_gone(api: FakeApi) -> None:
    api.handler = lambda request: httpx.Response(202)
    result = runner.invoke(_app(), ["backup", "delete", BACKUP_ID, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": BACKUP_ID, "action": "delete", "accepted": True, "deleted": False}
    assert [(r.method, r.url.path) for r in api.requests] == [("DELETE", f"/v1.0/{PROJECT}/backups/{BACKUP_ID}")]

    gets = iter([backup_body(status="COMPLETED"), backup_body(status="COMPLETED",
                                                               progress={"bytes_done": 0, "phase": "deleting"})])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(202)
        found = next(gets, None)
        return fault_response(404, "itemNotFound", "gone") if found is None else httpx.Response(
            200, json={"backup": found})

    api.handler = handler
    result = runner.invoke(_app(), ["backup", "delete", BACKUP_ID, "--wait"])
    assert result.exit_code == 0, result.output
    assert f"Backup {BACKUP_ID} deleted." in result.stdout


def test_delete_wait_exits_1_when_the_delete_fails(api: FakeApi) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(202)
        if len(api.requests) == 1:  # before the delete
            return httpx.Response(200, json={"backup": backup_body(status="COMPLETED")})
        return httpx.Response(200, json={"backup": backup_body(status="DELETE_FAILED", fault=FAULT)})

    api.handler = handler
    result = runner.invoke(_app(), ["backup", "delete", BACKUP_ID, "--wait"])
    assert result.exit_code == 1
    assert "DELETE_FAILED" in result.stderr and "could not connect" in result.stderr


def test_instance_create_from_a_backup(api: FakeApi) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/flavors"):
            return httpx.Response(200, json=FLAVORS)
        return httpx.Response(200, json={"instance": instance_body("i2")})

    api.handler = handler
    result = runner.invoke(_app(), ["instance", "create", "copy", "--flavor", "small", "--size", "2", "--backup",
                                    BACKUP_ID, "--json"])
    assert result.exit_code == 0, result.output
    assert api.bodies()[-1] == {
        "instance": {"name": "copy", "flavorRef": "2", "volume": {"size": 2}, "restorePoint": {"backupRef": BACKUP_ID}}
    }


@pytest.mark.parametrize(("gb", "text"), [(None, None), (0.0, "0 B"), (1 / 1024**2, "1.0 KiB"),
                                          (0.5, "512.0 MiB"), (1.5, "1.50 GiB"), (1000.0, "1000.00 GiB")])
def test_human_size(gb: float | None, text: str | None) -> None:
    assert backups_cli.human_size(gb) == text

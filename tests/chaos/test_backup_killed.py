"""A worker killed with SIGKILL at any step of a backup or of a restore loses nothing and leaves nothing.

As `test_worker_killed`: `REDDWARF_TEST_CRASH_AT=<kind>:<step>:<before|after>` kills the worker there, a second
worker takes the operation over once the short lease expires. A backup then completes with exactly one
attempt's objects left in storage (a half-written one is never COMPLETED, and its leftovers go); a restore
comes up ACTIVE with the source's rows. Every step for PostgreSQL (half of the pairs behind `matrix`), one
step for MariaDB and Redis.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.chaos.test_worker_killed import clean_up, crash_and_recover, every_step, steps_of, store
from tests.support.server import ReddwarfProcesses, running_plane, wait_for

BACKUP_STEPS = ["start", "stream", "complete", "tidy"]
RESTORE_STEPS = ["allocate_address", "prepare", "restore", "start", "answers", "adopt", "bootstrap", "verify",
                 "active"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-backup", "127.0.92.0/24", REDDWARF_EMBEDDED_WORKERS="0",
                       REDDWARF_LEASE_TTL="1", REDDWARF_WARM_POOL_SIZE="0") as procs:
        yield procs


def _active(plane: ReddwarfProcesses, client: httpx.Client, datastore: str, version: str) -> str:
    response = client.post("/instances", json={"instance": {
        "name": f"src-{datastore}", "flavorRef": "1", "volume": {"size": 1},
        "datastore": {"type": datastore, "version": version}}})
    assert response.status_code == 200, response.text
    instance_id = str(response.json()["instance"]["id"])
    worker = plane.start_worker()
    wait_for(lambda: client.get(f"/instances/{instance_id}").json()["instance"]["status"] == "ACTIVE", 120,
             "the source instance to be ACTIVE")
    worker.kill()
    worker.wait()
    return instance_id


@pytest.fixture(scope="module")
def sources(plane: ReddwarfProcesses) -> Iterator[dict[str, str]]:
    with plane.client() as client:
        found = {name: _active(plane, client, name, version)
                 for name, version in (("postgresql", "15"), ("mariadb", "10.11"), ("redis", "7.0"))}
        yield found
        plane.stop_all()
        plane.start_server()
        plane.start_worker()
        for instance_id in found.values():
            client.delete(f"/instances/{instance_id}")
        for instance_id in found.values():
            wait_for(lambda i=instance_id: client.get(f"/instances/{i}").status_code == 404, 120, "clean-up")
        plane.stop_all()
        plane.start_server()


def _op(plane: ReddwarfProcesses, resource_id: str, kind: str, backup_id: str | None = None
        ) -> tuple[str, str, list[str]] | None:
    """The state, last error and journaled steps of the operation of `kind` on the resource (of a backup
    create: the one taking `backup_id`; the same instance has had others)."""
    db = store(plane)
    try:
        with db.unit_of_work(write=False) as uow:
            ops = [op for op in [*uow.operations.active_for(resource_id), *uow.operations.history_for(resource_id)]
                   if op.kind == kind and (backup_id is None or (op.payload or {}).get("backup_id") == backup_id)]
            if not ops:
                return None
            assert len(ops) == 1, ops
            return ops[0].state, ops[0].last_error, steps_of(uow, ops[0].id)
    finally:
        db.dispose()


def _done(plane: ReddwarfProcesses, resource_id: str, kind: str, backup_id: str | None = None) -> list[str] | None:
    found = _op(plane, resource_id, kind, backup_id)
    assert found is not None
    state, error, steps = found
    assert state not in {"failed", "superseded"}, f"{state}: {error} after {steps}\n{plane.log_tail()}"
    return steps if state == "done" else None


def _backup_after_crash(
    plane: ReddwarfProcesses, client: httpx.Client, instance_id: str, step: str, when: str
) -> dict[str, Any]:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    response = client.post("/backups", json={"backup": {"name": f"chaos-{step}", "instance": instance_id}})
    assert response.status_code == 202, response.text
    backup_id = response.json()["backup"]["id"]
    crash_and_recover(plane, "backup.create", step, when, marker)
    steps = wait_for(lambda: _done(plane, instance_id, "backup.create", backup_id), 120,
                     "the backup to finish after the crash")
    assert steps == BACKUP_STEPS, steps
    shown = client.get(f"/backups/{backup_id}").json()["backup"]
    assert shown["status"] == "COMPLETED", shown
    # One attempt's objects, not two: a stale attempt's are removed, never completed.
    backup_dir = next(p for p in (plane.state_dir / "control" / "backups").rglob(backup_id) if p.is_dir())
    assert len([p for p in backup_dir.iterdir() if p.is_dir()]) == 1, list(backup_dir.rglob("*"))
    assert client.get(f"/instances/{instance_id}").json()["instance"]["status"] == "ACTIVE"
    plane.stop_all()
    plane.start_server()
    return dict(shown)


@pytest.mark.parametrize(("step", "when"), every_step(BACKUP_STEPS))
def test_a_postgresql_backup_survives_a_worker_killed_at_every_step(
    plane: ReddwarfProcesses, sources: dict[str, str], step: str, when: str
) -> None:
    with plane.client() as client:
        _backup_after_crash(plane, client, sources["postgresql"], step, when)


@pytest.mark.parametrize("datastore", ["mariadb", "redis"])
def test_other_engines_backups_survive_a_worker_killed_while_streaming(
    plane: ReddwarfProcesses, sources: dict[str, str], datastore: str
) -> None:
    with plane.client() as client:
        _backup_after_crash(plane, client, sources[datastore], "stream", "after")


@pytest.fixture(scope="module")
def postgresql_backup(plane: ReddwarfProcesses, sources: dict[str, str]) -> str:
    with plane.client() as client:
        return str(_backup_after_crash(plane, client, sources["postgresql"], "tidy", "before")["id"])


# In the default run: the restore's own steps, `restore` after its work (everything extracted and verified,
# not journaled) and `adopt` before it (the server up with the source's credential). The rest is `matrix`.
DEFAULT_RESTORE_PAIRS = (("restore", "after"), ("adopt", "before"))


def restore_steps() -> list[Any]:
    """Every (step, when) of a restore, all but `DEFAULT_RESTORE_PAIRS` behind `matrix` (the steps a restore
    shares with a create are killed in `test_worker_killed`'s default run)."""
    return [
        pytest.param(step, when, id=f"{step}-{when}",
                     marks=() if (step, when) in DEFAULT_RESTORE_PAIRS else (pytest.mark.matrix,))
        for step in RESTORE_STEPS for when in ("before", "after")
    ]


@pytest.mark.parametrize(("step", "when"), restore_steps())
def test_a_restore_survives_a_worker_killed_at_every_step(
    plane: ReddwarfProcesses, postgresql_backup: str, step: str, when: str
) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    with plane.client() as client:
        response = client.post("/instances", json={"instance": {
            "name": f"restore-{step}", "flavorRef": "1", "volume": {"size": 1},
            "restorePoint": {"backupRef": postgresql_backup}}})
        assert response.status_code == 200, response.text
        instance_id = response.json()["instance"]["id"]
        try:
            crash_and_recover(plane, "instance.restore", step, when, marker)
            steps = wait_for(lambda: _done(plane, instance_id, "instance.restore"), 120,
                             "the restore to finish after the crash")
            assert steps == RESTORE_STEPS, steps
            assert client.get(f"/instances/{instance_id}").json()["instance"]["status"] == "ACTIVE"
            assert not list((plane.state_dir / "instances" / instance_id / "volume" / "tmp").glob("restore*"))
        finally:
            clean_up(plane, client, instance_id)
            plane.start_server()

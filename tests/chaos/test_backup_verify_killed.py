"""A worker killed with SIGKILL at a step of a backup's verification (`REDDWARF_VERIFY_BACKUPS`) loses nothing
and leaves nothing: a second worker takes the operation over once the short lease expires, finds the throwaway
server the first one built (named after the backup), finishes the checks, records `verified` and removes the
server: no OS user, process or directory of it is left. Every pair is behind `matrix` (`./dev.sh test` runs
them; CI's default run does not): the module costs about 35 s for even one pair (its own control plane, a
source instance and its deletion), over this feature's CI budget; tests/e2e/test_backup_verify_e2e.py is the
real-server run CI keeps.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chaos.test_worker_killed import crash_and_recover, steps_of, store
from tests.support.server import ReddwarfProcesses, instance_users, processes_of, running_plane, wait_for

VERIFY_STEPS = ["allocate_address", "prepare", "restore", "start", "answers", "adopt", "check", "cleanup", "record"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-verify", "127.0.85.0/24", REDDWARF_EMBEDDED_WORKERS="0", REDDWARF_LEASE_TTL="1",
                       REDDWARF_WARM_POOL_SIZE="0", REDDWARF_VERIFY_BACKUPS="true") as procs:
        yield procs


@pytest.fixture(scope="module")
def source(plane: ReddwarfProcesses) -> Iterator[str]:
    with plane.client() as client:
        response = client.post("/instances", json={"instance": {
            "name": "src", "flavorRef": "1", "volume": {"size": 1},
            "datastore": {"type": "postgresql", "version": "15"}, "databases": [{"name": "app"}]}})
        assert response.status_code == 200, response.text
        instance_id = str(response.json()["instance"]["id"])
        worker = plane.start_worker()
        wait_for(lambda: client.get(f"/instances/{instance_id}").json()["instance"]["status"] == "ACTIVE", 120,
                 "the source instance to be ACTIVE")
        worker.kill()
        worker.wait()
        yield instance_id
        plane.stop_all()
        plane.start_server()
        plane.start_worker()
        client.delete(f"/instances/{instance_id}")
        wait_for(lambda: client.get(f"/instances/{instance_id}").status_code == 404, 120, "clean-up")
        plane.stop_all()
        plane.start_server()


def _verification(plane: ReddwarfProcesses, backup_id: str) -> list[str] | None:
    """The journaled steps of the backup's verification once it is done (None while it runs)."""
    db = store(plane)
    try:
        with db.unit_of_work(write=False) as uow:
            ops = [op for op in [*uow.operations.active_for(backup_id), *uow.operations.history_for(backup_id)]
                   if op.kind == "backup.verify"]
            if not ops:
                return None
            assert len(ops) == 1, ops
            op = ops[0]
            assert op.state not in {"failed", "superseded"}, f"{op.state}: {op.last_error}\n{plane.log_tail()}"
            return steps_of(uow, op.id) if op.state == "done" else None
    finally:
        db.dispose()


def verify_steps() -> list[Any]:
    return [pytest.param(step, when, id=f"{step}-{when}", marks=(pytest.mark.matrix,))
            for step in VERIFY_STEPS for when in ("before", "after")]


@pytest.mark.parametrize(("step", "when"), verify_steps())
def test_a_verification_survives_a_worker_killed_at_every_step(
    plane: ReddwarfProcesses, source: str, step: str, when: str
) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    with plane.client() as client:
        response = client.post("/backups", json={"backup": {"name": f"verify-{step}", "instance": source}})
        assert response.status_code == 202, response.text
        backup_id = str(response.json()["backup"]["id"])
        crash_and_recover(plane, "backup.verify", step, when, marker)
        steps = wait_for(lambda: _verification(plane, backup_id), 120, "the verification to finish after the crash")
        assert steps == VERIFY_STEPS, steps
        shown = client.get(f"/backups/{backup_id}").json()["backup"]
        assert shown["status"] == "COMPLETED" and shown["verified"] is True, shown
        user = plane.os_user(backup_id)
        assert user not in instance_users(plane.user_prefix) and processes_of(user) == []
        assert not (plane.state_dir / "instances" / backup_id.lower()).exists()
        plane.stop_all()
        plane.start_server()

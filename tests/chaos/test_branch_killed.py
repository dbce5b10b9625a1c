"""A worker killed with SIGKILL at any step of a branch, and while the source's filesystem is frozen for the
snapshot: nothing stays frozen (a write on the source's volume goes through within a second of the kill:
the freeze's holder sees the worker's pipe close), a second worker finishes the branch once the short lease
expires, the branch is ACTIVE with its source's rows, and no snapshot is left in the pool.

The default run kills the worker while frozen, right after the branch step (the copy made, not journaled)
and before `adopt` (the copy up with its source's credential): the steps a create from scratch does not
have. Every other (step, when) pair is `matrix`.

The same for a snapshot (a worker killed while the instance is frozen for it: nothing stays frozen, the
snapshot completes) and for a backup streamed from a snapshot (`from_snapshot`): killed at any step, it
completes and nothing of its throwaway server is left; by default right after `stream` (the artifact
written, not journaled: the retry streams again and `tidy` removes the first attempt's objects).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.chaos.pg_source import active, postgres_source, tenant
from tests.chaos.test_worker_killed import crash_and_recover, finished
from tests.support.server import ReddwarfProcesses, running_plane, wait_for

BRANCH_STEPS = ["allocate_address", "branch", "start", "answers", "adopt", "bootstrap", "verify", "active"]
DEFAULT_PAIRS = (("branch", "after"), ("adopt", "before"))
USER, PASSWORD = "carol", "chaos-" + secrets.token_hex(4)


def branch_steps() -> list[object]:
    return [pytest.param(step, when, id=f"{step}-{when}",
                         marks=() if (step, when) in DEFAULT_PAIRS else (pytest.mark.matrix,))
            for step in BRANCH_STEPS for when in ("before", "after")]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-branch", "127.0.173.0/24", REDDWARF_EMBEDDED_WORKERS="0", REDDWARF_LEASE_TTL="1",
                       REDDWARF_WARM_POOL_SIZE="0", REDDWARF_LOCAL_USE_COW_POOL="true",
                       REDDWARF_LOCAL_POOL_GB="8") as procs:
        yield procs


@pytest.fixture(scope="module")
def source(plane: ReddwarfProcesses) -> Iterator[dict[str, object]]:
    with postgres_source(plane, "branch-source", USER, PASSWORD) as view:
        yield view


_active = active


def _tenant(view: dict[str, object]) -> psycopg.Connection[tuple[object, ...]]:
    return tenant(view, USER, PASSWORD)


def _write_seconds(volume: Path) -> float:
    """How long a write and fsync on the volume takes (it waits while the filesystem is frozen)."""
    started = time.monotonic()
    fd = os.open(volume / "tmp" / "chaos-probe", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"x")
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.monotonic() - started


def _branch(plane: ReddwarfProcesses, client: httpx.Client, source_id: str, name: str) -> str:
    response = client.post("/instances", json={"instance": {
        "name": name, "flavorRef": "1", "volume": {"size": 1}, "restorePoint": {"instanceRef": source_id}}})
    assert response.status_code == 200, response.text
    return str(response.json()["instance"]["id"])


def _converged(plane: ReddwarfProcesses, client: httpx.Client, branch_id: str) -> None:
    steps = wait_for(lambda: finished(plane, branch_id, "instance.restore"), 120, "the branch to finish")
    assert steps == BRANCH_STEPS, steps
    view = _active(client, branch_id)
    assert view is not None
    with _tenant(view) as conn:
        assert conn.execute("select count(*) from t").fetchone() == (1000,)
    assert list((plane.state_dir / "pool" / "snapshots").iterdir()) == []
    _tidy_up(plane, client, (f"/instances/{branch_id}",))


def test_a_worker_killed_while_the_source_is_frozen_leaves_nothing_frozen(
    plane: ReddwarfProcesses, source: dict[str, object]
) -> None:
    source_id = str(source["id"])
    volume = plane.state_dir / "instances" / source_id / "volume"
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    with plane.client() as client:
        branch_id = _branch(plane, client, source_id, "chaos-frozen")
        _killed_while_frozen(plane, "instance.restore:branch:frozen", volume, marker)
        with _tenant(source) as conn:  # the source's server writes as before
            conn.execute("insert into t values (-1)")
            conn.execute("delete from t where id = -1")
        plane.start_worker(REDDWARF_TEST_CRASH_AT="instance.restore:branch:frozen",
                           REDDWARF_TEST_CRASH_MARKER=str(marker))
        _converged(plane, client, branch_id)


def _killed_while_frozen(plane: ReddwarfProcesses, crash_at: str, volume: Path, marker: Path) -> None:
    """Start a worker that SIGKILLs itself while `volume` is frozen: a write on it goes through within a
    second of the kill."""
    crashing = plane.start_worker(REDDWARF_TEST_CRASH_AT=crash_at, REDDWARF_TEST_CRASH_MARKER=str(marker))
    assert crashing.wait(timeout=120) == -9, "the worker should have died by SIGKILL while frozen"
    killed = time.monotonic()
    assert marker.exists()
    assert _write_seconds(volume) + (time.monotonic() - killed) < 1.0


@pytest.mark.parametrize(("step", "when"), branch_steps())
def test_a_branch_survives_a_worker_killed_at_every_step(
    plane: ReddwarfProcesses, source: dict[str, object], step: str, when: str
) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    with plane.client() as client:
        branch_id = _branch(plane, client, str(source["id"]), f"chaos-{step}-{when}")
        crash_and_recover(plane, "instance.restore", step, when, marker)
        _converged(plane, client, branch_id)


SNAPSHOT_BACKUP_STEPS = ["building", "allocate_address", "branch", "start", "answers", "adopt", "stream", "cleanup",
                         "complete", "tidy"]
SNAPSHOT_BACKUP_DEFAULT = (("stream", "after"),)


def snapshot_backup_steps() -> list[object]:
    return [pytest.param(step, when, id=f"{step}-{when}",
                         marks=() if (step, when) in SNAPSHOT_BACKUP_DEFAULT else (pytest.mark.matrix,))
            for step in SNAPSHOT_BACKUP_STEPS for when in ("before", "after")]


def _tidy_up(plane: ReddwarfProcesses, client: httpx.Client, paths: tuple[str, ...]) -> None:
    plane.stop_all()
    plane.start_server()
    plane.start_worker()
    for path in paths:
        client.delete(path)
    def gone() -> bool:
        return all(client.get(path).status_code == 404 for path in paths)

    wait_for(gone, 120, f"{', '.join(paths)} to be deleted")
    plane.stop_all()
    plane.start_server()


def test_a_worker_killed_while_a_snapshot_freezes_leaves_nothing_frozen(
    plane: ReddwarfProcesses, source: dict[str, object]
) -> None:
    source_id = str(source["id"])
    volume = plane.state_dir / "instances" / source_id / "volume"
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    with plane.client() as client:
        response = client.post(f"/instances/{source_id}/snapshots", json={"snapshot": {"name": "chaos-frozen"}})
        assert response.status_code == 202, response.text
        snapshot_id = response.json()["snapshot"]["id"]
        _killed_while_frozen(plane, "snapshot.create:snapshot:frozen", volume, marker)
        plane.start_worker(REDDWARF_TEST_CRASH_AT="snapshot.create:snapshot:frozen",
                           REDDWARF_TEST_CRASH_MARKER=str(marker))
        steps = wait_for(lambda: finished(plane, source_id, "snapshot.create"), 120, "the snapshot to finish")
        assert steps == ["snapshot"], steps
        assert client.get(f"/snapshots/{snapshot_id}").json()["snapshot"]["status"] == "COMPLETED"
        _tidy_up(plane, client, (f"/snapshots/{snapshot_id}",))


@pytest.mark.parametrize(("step", "when"), snapshot_backup_steps())
def test_a_backup_from_a_snapshot_survives_a_worker_killed_at_every_step(
    plane: ReddwarfProcesses, source: dict[str, object], step: str, when: str
) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    with plane.client() as client:
        response = client.post("/backups", json={"backup": {
            "name": f"chaos-{step}-{when}", "instance": str(source["id"]), "from_snapshot": True}})
        assert response.status_code == 202, response.text
        backup = response.json()["backup"]
        crash_and_recover(plane, "backup.from_snapshot", step, when, marker)
        steps = wait_for(lambda: finished(plane, backup["id"], "backup.from_snapshot"), 180, "the backup to finish")
        assert steps == SNAPSHOT_BACKUP_STEPS, steps
        assert client.get(f"/backups/{backup['id']}").json()["backup"]["status"] == "COMPLETED"
        # Nothing of the throwaway server is left: no files, no process, its address given back.
        assert not (plane.state_dir / "instances" / backup["id"]).exists()
        assert list((plane.state_dir / "pool" / "volumes").glob(f"{backup['id']}*")) == []
        _tidy_up(plane, client, (f"/backups/{backup['id']}", f"/snapshots/{backup['snapshot_id']}"))


@pytest.mark.matrix
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_snapshot_survives_a_worker_killed_around_its_step(
    plane: ReddwarfProcesses, source: dict[str, object], when: str
) -> None:
    source_id = str(source["id"])
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    with plane.client() as client:
        response = client.post(f"/instances/{source_id}/snapshots", json={"snapshot": {"name": f"chaos-{when}"}})
        assert response.status_code == 202, response.text
        snapshot_id = response.json()["snapshot"]["id"]
        crash_and_recover(plane, "snapshot.create", "snapshot", when, marker)
        wait_for(lambda: client.get(f"/snapshots/{snapshot_id}").json()["snapshot"]["status"] == "COMPLETED", 120,
                 "the snapshot to complete")
        assert list((plane.state_dir / "pool" / "snapshots").glob(".*")) == []  # no half-made copy left
        _tidy_up(plane, client, (f"/snapshots/{snapshot_id}",))

"""A worker killed with SIGKILL at any step of a replica's create, or of its delete, loses nothing: a second
worker finishes it once the short lease expires. A created replica is ACTIVE with its source's rows and
streams what the source writes next; a deleted one leaves its set, and its slot on the source is dropped.

Each step is killed once in the default run (`before` and `after` alternating from one step to the next); the
other half is `matrix` (`tests/chaos/test_worker_killed.every_step`). A case kills the create at one step and
then the delete of the same replica at one of its own, so that no case seeds a replica only to delete it.
PostgreSQL is the engine here, and this plane seeds replicas from backups (`REDDWARF_REPLICA_SEED=backup`): the
create records the backup of its source as a child operation, waits for it, restores it and deletes it at the
end, so a kill lands on either side of the child's record and of its wait. (Snapshot seeds are killed in
`test_replication_engines_killed.py`; pg_basebackup's are the switchover e2e's.)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.chaos.pg_source import active, postgres_source, tenant
from tests.chaos.test_worker_killed import crash_and_recover, finished
from tests.support.server import ReddwarfProcesses, running_plane, wait_for

# A snapshot's seed (or the engine's over the network) is one step; a backup's records its child and waits for it,
# and the backup goes at the end.
SNAPSHOT_STEPS = ["allocate_address", "source_ready", "reader_endpoint", "seed_from", "seed", "start", "answers",
                  "verify", "active"]
REPLICA_STEPS = [*SNAPSHOT_STEPS[:4], "seed_backup", "seed_backup.taken", *SNAPSHOT_STEPS[4:], "forget_seed"]
DELETE_STEPS = ["shutdown", "membership", "leave_set", "routes", "destroy", "release_slot", "forget"]
USER, PASSWORD = "dora", "chaos-" + secrets.token_hex(4)
SLOTS = "select count(*) from pg_replication_slots where slot_name like 'reddwarf\\_%'"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-replica", "127.0.175.0/24", REDDWARF_EMBEDDED_WORKERS="0",
                       REDDWARF_LEASE_TTL="1", REDDWARF_REPLICA_SEED="backup") as procs:
        yield procs


@pytest.fixture(scope="module")
def source(plane: ReddwarfProcesses) -> Iterator[dict[str, object]]:
    with postgres_source(plane, "replica-source", USER, PASSWORD) as view:
        yield view


_active = active


def _tenant(view: dict[str, object]) -> psycopg.Connection[tuple[object, ...]]:
    return tenant(view, USER, PASSWORD)


def _replica(client: httpx.Client, source_id: str, name: str) -> str:
    response = client.post("/instances", json={"instance": {"name": name, "replica_of": source_id}})
    assert response.status_code == 200, response.text
    return str(response.json()["instance"]["id"])


def _backups(client: httpx.Client, source_id: str) -> list[dict[str, object]]:
    response = client.get(f"/instances/{source_id}/backups")
    assert response.status_code == 200, response.text
    return list(response.json()["backups"])


def _slots(source: dict[str, object]) -> int:
    with _tenant(source) as conn:
        row = conn.execute(SLOTS).fetchone()
        assert row is not None
        return int(str(row[0]))


def _pairs(steps: list[str]) -> list[tuple[str, str, bool]]:
    """(step, when, in the default run) as `every_step` makes them."""
    return [(step, when, (i + j) % 2 == 0)
            for i, step in enumerate(steps) for j, when in enumerate(("before", "after"))]


def create_then_delete() -> list[object]:
    """Each (step, when) of the create, each paired with one of the delete's (round robin, the default run's
    with the default run's): every pair of both is killed once across the default run and `matrix`."""
    creates, deletes = _pairs(REPLICA_STEPS), _pairs(DELETE_STEPS)
    cases = []
    for default in (True, False):
        create_half = [(s, w) for s, w, d in creates if d == default]
        delete_half = [(s, w) for s, w, d in deletes if d == default]
        for k, (step, when) in enumerate(create_half):
            delete_step, delete_when = delete_half[k % len(delete_half)]
            cases.append(pytest.param(step, when, delete_step, delete_when,
                                      id=f"{step}-{when}+{delete_step}-{delete_when}",
                                      marks=() if default else (pytest.mark.matrix,)))
    return cases


@pytest.mark.parametrize(("step", "when", "delete_step", "delete_when"), create_then_delete())
def test_a_replicas_create_and_delete_survive_a_worker_killed_at_every_step(
    plane: ReddwarfProcesses, source: dict[str, object], step: str, when: str, delete_step: str, delete_when: str
) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    source_id = str(source["id"])
    with plane.client() as client:
        replica_id = _replica(client, source_id, f"chaos-{step}-{when}")
        crash_and_recover(plane, "instance.replica.create", step, when, marker)
        steps = wait_for(lambda: finished(plane, replica_id, "instance.replica.create"), 120,
                         "the replica's create to finish after the crash")
        assert steps == REPLICA_STEPS, steps
        view = _active(client, replica_id)
        assert view is not None and view["replica_of"]["id"] == source_id  # type: ignore[index]
        # One backup was taken for it (its child recorded once, whatever was killed), and it is gone again.
        events = client.get(f"/instances/{source_id}/events").json()["events"]
        taken = [e for e in events if f"to seed replica {replica_id}" in str(e.get("message"))]
        assert len(taken) == 1, taken
        wait_for(lambda: not _backups(client, source_id), 60, "the seed backup to be deleted")
        with _tenant(source) as conn:
            conn.execute("insert into t values (-1)")
        with _tenant(view) as conn:
            wait_for(lambda: conn.execute("select count(*) from t").fetchone() == (1001,), 30, "the row to stream")
        with _tenant(source) as conn:
            conn.execute("delete from t where id = -1")
        plane.stop_workers()

        # The delete of the same replica, killed at one of its own steps: it leaves its set, and its slot goes.
        assert client.delete(f"/instances/{replica_id}").status_code == 202
        crash_and_recover(plane, "instance.delete", delete_step, delete_when,
                          plane.state_dir / f"crash-{secrets.token_hex(4)}")
        steps = wait_for(lambda: finished(plane, replica_id, "instance.delete"), 120,
                         "the replica's delete to finish after the crash")
        assert steps == DELETE_STEPS, steps
        assert client.get(f"/instances/{source_id}").json()["instance"]["replicas"] == []
        wait_for(lambda: _slots(source) == 0, 60, "the slot to be dropped")
        plane.stop_workers()


@pytest.mark.parametrize("step", ["seed_backup", "seed_backup.taken"])
def test_a_replica_deleted_while_it_is_seeded_leaves_no_backup(
    plane: ReddwarfProcesses, source: dict[str, object], step: str
) -> None:
    """Its create dies once the backup was asked for (still to be taken) or taken (not yet restored), and the
    tenant deletes the replica: the create is superseded, and the backup goes either way (ended by its own
    operation, which finds what it was taken for gone, or by the replica's delete)."""
    source_id = str(source["id"])
    with plane.client() as client:
        replica_id = _replica(client, source_id, f"chaos-gone-{step}")
        crashing = plane.start_worker(REDDWARF_TEST_CRASH_AT=f"instance.replica.create:{step}:after",
                                      REDDWARF_TEST_CRASH_MARKER=str(plane.state_dir / f"crash-{secrets.token_hex(4)}"))
        assert crashing.wait(timeout=120) == -9
        assert client.delete(f"/instances/{replica_id}").status_code == 202
        plane.start_worker()
        wait_for(lambda: client.get(f"/instances/{replica_id}").status_code == 404, 120, "the replica's delete")
        wait_for(lambda: not _backups(client, source_id), 60, "the seed backup to be deleted")
        assert _active(client, source_id) is not None  # no longer BACKUP: the source serves on
        wait_for(lambda: _slots(source) == 0, 60, "the slot to be dropped")
        plane.stop_workers()


DETACH_STEPS = ["mark", "membership", "leave_set", "routes", "promote", "refresh", "new_admin", "adopt", "admin",
                "release_slot", "ready"]
# Left the set but not promoted; the new admin password set but not yet the instance's.
DETACH_DEFAULT = (("leave_set", "after"), ("adopt", "after"))


def detach_steps() -> list[object]:
    return [pytest.param(step, when, id=f"{step}-{when}",
                         marks=() if (step, when) in DETACH_DEFAULT else (pytest.mark.matrix,))
            for step in DETACH_STEPS for when in ("before", "after")]


@pytest.mark.parametrize(("step", "when"), detach_steps())
def test_a_detach_survives_a_worker_killed_at_every_step(
    plane: ReddwarfProcesses, source: dict[str, object], step: str, when: str
) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    source_id = str(source["id"])
    with plane.client() as client:
        replica_id = _replica(client, source_id, f"chaos-detach-{step}-{when}")
        worker = plane.start_worker()
        wait_for(lambda: _active(client, replica_id), 120, "the replica to be ACTIVE")
        worker.kill()
        worker.wait()
        assert client.put(f"/instances/{replica_id}", json={"instance": {"replica_of": None}}).status_code == 202
        crash_and_recover(plane, "instance.replica.detach", step, when, marker)
        steps = wait_for(lambda: finished(plane, replica_id, "instance.replica.detach"), 120,
                         "the detach to finish after the crash")
        assert steps == DETACH_STEPS, steps
        view = _active(client, replica_id)
        assert view is not None and "replica_of" not in view
        with _tenant(view) as conn:  # read-write, the source's rows
            conn.execute("insert into t values (-7)")
            assert conn.execute("select count(*) from t").fetchone() == (1001,)
        wait_for(lambda: _slots(source) == 0, 60, "the slot to be dropped")
        plane.stop_workers()
        plane.start_worker()
        client.delete(f"/instances/{replica_id}")
        wait_for(lambda: client.get(f"/instances/{replica_id}").status_code == 404, 120, "the detached one's delete")
        plane.stop_workers()

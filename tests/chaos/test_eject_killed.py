"""A worker killed with SIGKILL at any step of a failover (`instance.replica.eject`) loses nothing: a second
worker finishes it once the short lease expires. Afterwards the replica that held the most of the dead source's
log is the primary and takes writes, the other replica follows it, and the source comes back only as a
replica of the new primary.

Each case kills the set's primary (no worker runs, so nothing restarts it, and the test records what the health
loop would have found: its server is down), ejects it, and crashes the worker; the old primary then rejoins
as a replica (`instance.replica.rejoin`, rewound), so that the next case finds a primary with two replicas
again. Each step is killed once in the default run (`before` and `after` alternating); the other half is
`matrix`.
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from reddwarf.domain.conditions import Observation
from tests.chaos.pg_source import active, postgres_source, tenant
from tests.chaos.test_promote_killed import _roles, _view
from tests.chaos.test_worker_killed import crash_and_recover, every_step, nth_finished, runs_of, store
from tests.support.server import ReddwarfProcesses, processes_of, running_plane, signal_processes, wait_for

KIND = "instance.replica.eject"
STEPS = ["membership", "mark", "fence", "shut", "fenced", "choose", "swap_roles", "promote", "switch",
         "source_ready", "repoint", "repointed", "ready"]
# The eject's child on the replica that was not chosen (`instance.replica.repoint`), killed at its one step.
CHILD = ("instance.replica.repoint", "follow")
USER, PASSWORD = "edna", "chaos-" + secrets.token_hex(4)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-eject", "127.0.178.0/24", REDDWARF_EMBEDDED_WORKERS="0", REDDWARF_LEASE_TTL="1",
                       REDDWARF_EJECT_AFTER="0") as procs:
        yield procs


@pytest.fixture(scope="module")
def members(plane: ReddwarfProcesses) -> Iterator[list[str]]:
    """Every instance the cases made (the source first): the fenced ones are deleted as the cases go."""
    with postgres_source(plane, "eject-source", USER, PASSWORD) as view, plane.client() as client:
        made = [str(view["id"])]
        worker = plane.start_worker()
        made += _replicas(client, made[0], 2)
        worker.kill()
        worker.wait()
        yield made
        plane.stop_workers()
        plane.start_worker()
        alive = [i for i in made if client.get(f"/instances/{i}").status_code == 200]
        primary, followers = _roles(client, alive)
        for batch in (followers, [primary]):
            for member_id in batch:
                client.delete(f"/instances/{member_id}")
            for member_id in batch:
                wait_for(lambda m=member_id: client.get(f"/instances/{m}").status_code == 404, 120, "clean-up")


def _replicas(client: httpx.Client, source_id: str, count: int) -> list[str]:
    before = {str(r["id"]) for r in client.get(f"/instances/{source_id}").json()["instance"]["replicas"]}
    # Ejected by the cases themselves: the set does not fail over by itself.
    response = client.post("/instances", json={"instance": {"name": "eject", "replica_of": source_id,
                                                            "replica_count": count,
                                                            "replication": {"auto_failover": False}}})
    assert response.status_code == 200, response.text
    now = [str(r["id"]) for r in client.get(f"/instances/{source_id}").json()["instance"]["replicas"]]
    new = [r for r in now if r not in before]
    for replica_id in new:
        wait_for(lambda r=replica_id: active(client, r), 120, "the new replicas to be ACTIVE")
    return new


def _count(view: dict[str, object], plane: ReddwarfProcesses) -> int:
    """The rows of the member of `view` itself (over its unix socket)."""
    with tenant(view, USER, PASSWORD, plane) as conn:
        row = conn.execute("select count(*) from t").fetchone()
    assert row is not None
    return int(str(row[0]))


def _server_down(plane: ReddwarfProcesses, instance_id: str) -> None:
    """Kill the instance's server and record what the health loop would have found (no worker runs here)."""
    signal_processes(processes_of(plane.os_user(instance_id)), signal.SIGKILL)
    db = store(plane)
    try:
        with db.unit_of_work() as uow:
            found = uow.instances.get(instance_id)
            assert found is not None
            uow.instances.record(instance_id, Observation.SERVER_DOWN, "killed by the test",
                                 generation=found.generation)
    finally:
        db.dispose()


@pytest.mark.parametrize(("step", "when"), [*every_step(STEPS), pytest.param("child", "after", id="child-after")])
def test_a_failover_survives_a_worker_killed_at_every_step(
    plane: ReddwarfProcesses, members: list[str], step: str, when: str
) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    with plane.client() as client:
        alive = [i for i in members if client.get(f"/instances/{i}").status_code == 200]
        source, replicas = _roles(client, alive)
        rows = _count(_view(client, source), plane)
        before = len(runs_of(plane, source, KIND))
        _server_down(plane, source)
        response = client.post(f"/instances/{source}/action", json={"eject_replica_source": {}})
        assert response.status_code == 202, response.text
        kind, step = CHILD if step == "child" else (KIND, step)
        crash_and_recover(plane, kind, step, when, marker)
        steps = wait_for(lambda: nth_finished(plane, source, KIND, before), 120,
                         "the failover to finish after the crash")
        assert steps == STEPS, steps

        views = {r: wait_for(lambda r=r: active(client, r), 60, "the replicas to be ACTIVE") for r in replicas}
        (primary,) = [r for r, v in views.items() if "replica_of" not in v]
        (other,) = [r for r in replicas if r != primary]
        assert views[other]["replica_of"]["id"] == primary  # type: ignore[index]
        assert _count(views[primary], plane) == rows
        with tenant(views[primary], USER, PASSWORD) as conn:
            conn.execute("insert into t values (%s)", (-1 - rows,))
        wait_for(lambda: _count(views[other], plane) == rows + 1, 30, "the new row to reach the other replica")
        # The old primary never came back as a primary: it rejoins as a replica of the new one, rewound.
        rejoined = wait_for(lambda: active(client, source), 120, "the old primary to rejoin")
        assert rejoined["replica_of"]["id"] == primary  # type: ignore[index]
        wait_for(lambda: _count(rejoined, plane) == rows + 1, 30, "the new row to reach the old primary")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), tenant(rejoined, USER, PASSWORD, plane) as conn:
            conn.execute("insert into t values (0)")
        plane.stop_workers()

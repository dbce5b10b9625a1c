"""A worker killed with SIGKILL at any step of a switchover (`instance.replica.promote`) loses nothing: a second
worker finishes it once the short lease expires. Afterwards the promoted replica is the primary and takes
writes, the old primary and the other replica follow it (a row written on the new primary reaches both), and
every row written before is still there.

One set of three (a source and two replicas) serves every case: each promotes the set's first replica as it is
then, so the roles rotate. Each step is killed once in the default run (`before` and `after` alternating); the
other half is `matrix` (`tests/chaos/test_worker_killed.every_step`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.chaos.pg_source import active, postgres_source, tenant
from tests.chaos.test_worker_killed import crash_and_recover, every_step, nth_finished, runs_of
from tests.support.server import ReddwarfProcesses, running_plane, wait_for

KIND = "instance.replica.promote"
# `repoint` stands for `repoint-<id of the other replica>`.
STEPS = ["membership", "mark", "streams", "shut", "stop_source", "caught_up", "swap_roles", "promote", "switch",
         "source_ready", "demote", "start", "answers", "repoint", "ready"]
USER, PASSWORD = "pia", "chaos-" + secrets.token_hex(4)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-promote", "127.0.177.0/24", REDDWARF_EMBEDDED_WORKERS="0", REDDWARF_LEASE_TTL="1",
                       REDDWARF_REPLICATION_CHECK_INTERVAL="0.5") as procs:
        yield procs


@pytest.fixture(scope="module")
def members(plane: ReddwarfProcesses) -> Iterator[list[str]]:
    """The set's members: the source first, then its two replicas."""
    with postgres_source(plane, "promote-source", USER, PASSWORD) as view, plane.client() as client:
        source_id = str(view["id"])
        response = client.post("/instances", json={"instance": {"name": "promote", "replica_of": source_id,
                                                                "replica_count": 2}})
        assert response.status_code == 200, response.text
        worker = plane.start_worker()
        replicas = client.get(f"/instances/{source_id}").json()["instance"]["replicas"]
        for replica in replicas:
            wait_for(lambda r=replica["id"]: active(client, r), 120, "the replicas to be ACTIVE")
        worker.kill()
        worker.wait()
        ids = [source_id, *(str(r["id"]) for r in replicas)]
        yield ids
        plane.stop_workers()
        plane.start_worker()
        primary, followers = _roles(client, ids)
        for batch in (followers, [primary]):  # the primary once it has no replica left
            for member_id in batch:
                client.delete(f"/instances/{member_id}")
            for member_id in batch:
                wait_for(lambda m=member_id: client.get(f"/instances/{m}").status_code == 404, 120, "clean-up")


def _view(client: httpx.Client, instance_id: str) -> dict[str, object]:
    return dict(client.get(f"/instances/{instance_id}").json()["instance"])


def _roles(client: httpx.Client, ids: list[str]) -> tuple[str, list[str]]:
    views = {i: _view(client, i) for i in ids}
    (primary,) = [i for i, v in views.items() if "replica_of" not in v]
    return primary, [str(r["id"]) for r in views[primary]["replicas"]]  # type: ignore[attr-defined]


def _count(view: dict[str, object], plane: ReddwarfProcesses) -> int:
    """The rows of the member of `view` itself (over its unix socket)."""
    with tenant(view, USER, PASSWORD, plane) as conn:
        row = conn.execute("select count(*) from t").fetchone()
    assert row is not None
    return int(str(row[0]))


@pytest.mark.parametrize(("step", "when"), every_step(STEPS))
def test_a_switchover_survives_a_worker_killed_at_every_step(
    plane: ReddwarfProcesses, members: list[str], step: str, when: str
) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    with plane.client() as client:
        primary, (candidate, other) = _roles(client, members)
        rows = _count(_view(client, primary), plane)
        wait_for(lambda: (_view(client, candidate).get("replication") or {}).get("state") != "stopped", 30,
                 "the candidate not to be seen stopped")
        before = len(runs_of(plane, candidate, KIND))
        assert client.post(f"/instances/{candidate}/action",
                           json={"promote_to_replica_source": {}}).status_code == 202
        crash_and_recover(plane, KIND, "repoint-*" if step == "repoint" else step, when, marker)
        steps = wait_for(lambda: nth_finished(plane, candidate, KIND, before), 120,
                         "the switchover to finish after the crash")
        assert steps == [f"repoint-{other}" if s == "repoint" else s for s in STEPS], steps

        promoted = wait_for(lambda: active(client, candidate), 60, "the new primary to be ACTIVE")
        assert "replica_of" not in promoted
        with tenant(promoted, USER, PASSWORD) as conn:
            conn.execute("insert into t values (%s)", (-1 - rows,))
        for follower in (primary, other):
            view = wait_for(lambda f=follower: active(client, f), 60, "the followers to be ACTIVE")
            assert view["replica_of"]["id"] == candidate  # type: ignore[index]
            wait_for(lambda v=view: _count(v, plane) == rows + 1, 30, f"the new row to reach {follower}")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), tenant(_view(client, primary), USER,
                                                                          PASSWORD, plane) as conn:
            conn.execute("insert into t values (0)")
        plane.stop_workers()

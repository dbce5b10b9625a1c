"""MariaDB's replication survives a worker killed with SIGKILL mid-operation (one step each: PostgreSQL's chaos
tests kill every step of the same workflows, `test_replica_killed.py`, `test_promote_killed.py`): a replica's
create killed once its volume is the snapshot's copy but before its server started, and a switchover killed
right after the roles were swapped (its point of no return). A second worker finishes each; the replica
follows its source, and after the switchover the new primary takes writes and the old one follows it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pymysql
import pytest

from tests.chaos.pg_source import active
from tests.chaos.test_replica_killed import REPLICA_STEPS
from tests.chaos.test_worker_killed import crash_and_recover, finished, nth_finished, runs_of
from tests.support.server import ReddwarfProcesses, running_plane, wait_for

USER, PASSWORD = "mia", "chaos-" + secrets.token_hex(4)
PROMOTE = "instance.replica.promote"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-mariadb-replica", "127.0.181.0/24", REDDWARF_EMBEDDED_WORKERS="0",
                       REDDWARF_LEASE_TTL="1", REDDWARF_REPLICATION_CHECK_INTERVAL="0.5") as procs:
        yield procs


def _sql(view: dict[str, object], sql: str) -> object:
    addresses = view["addresses"]
    assert isinstance(addresses, list)
    conn = pymysql.connect(host=addresses[0]["address"], port=int(str(view["port"])), user=USER, password=PASSWORD,
                           database="app", connect_timeout=5, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
    finally:
        conn.close()
    return None if row is None else row[0]


def _count(client: httpx.Client, instance_id: str) -> int:
    try:
        return int(str(_sql(client.get(f"/instances/{instance_id}").json()["instance"], "select count(*) from t")))
    except pymysql.err.OperationalError:
        return -1


@pytest.fixture(scope="module")
def source(plane: ReddwarfProcesses) -> Iterator[str]:
    with plane.client() as client:
        response = client.post("/instances", json={"instance": {
            "name": "mariadb-source", "flavorRef": "1", "volume": {"size": 1}, "databases": [{"name": "app"}],
            "datastore": {"type": "mariadb"},
            "users": [{"name": USER, "password": PASSWORD, "databases": [{"name": "app"}]}]}})
        assert response.status_code == 200, response.text
        source_id = str(response.json()["instance"]["id"])
        worker = plane.start_worker()
        view = wait_for(lambda: active(client, source_id), 120, "the source to be ACTIVE")
        _sql(view, "create table t (id int primary key) engine=InnoDB")
        _sql(view, "insert into t select seq from seq_1_to_1000")
        worker.kill()
        worker.wait()
        yield source_id
        plane.stop_all()
        plane.start_server()
        plane.start_worker()
        view = client.get(f"/instances/{source_id}").json()["instance"]
        primary = str(view["replica_of"]["id"]) if "replica_of" in view else source_id
        followers = [str(r["id"]) for r in client.get(f"/instances/{primary}").json()["instance"].get("replicas", [])]
        for batch in (followers, [primary]):  # the primary once it has no replica left
            for member_id in batch:
                client.delete(f"/instances/{member_id}")
            for member_id in batch:
                wait_for(lambda m=member_id: client.get(f"/instances/{m}").status_code == 404, 120, "clean-up")
        plane.stop_all()
        plane.start_server()


def test_a_mariadb_replica_create_and_switchover_survive_a_killed_worker(
    plane: ReddwarfProcesses, source: str
) -> None:
    with plane.client() as client:
        response = client.post("/instances", json={"instance": {"name": "chaos-replica", "replica_of": source}})
        assert response.status_code == 200, response.text
        replica = str(response.json()["instance"]["id"])
        crash_and_recover(plane, "instance.replica.create", "seed", "after",
                          plane.state_dir / f"crash-{secrets.token_hex(4)}")
        steps = wait_for(lambda: finished(plane, replica, "instance.replica.create"), 120,
                         "the replica's create to finish after the crash")
        assert steps == REPLICA_STEPS, steps
        wait_for(lambda: active(client, replica), 60, "the replica to be ACTIVE")
        _sql(client.get(f"/instances/{source}").json()["instance"], "insert into t values (-1)")
        wait_for(lambda: _count(client, replica) == 1001, 30, "the new row to reach the replica")
        plane.stop_workers()

        # The switchover, killed right after the roles were swapped: the replica is the primary, the source follows.
        before = len(runs_of(plane, replica, PROMOTE))
        assert client.post(f"/instances/{replica}/action", json={"promote_to_replica_source": {}}).status_code == 202
        crash_and_recover(plane, PROMOTE, "swap_roles", "after", plane.state_dir / f"crash-{secrets.token_hex(4)}")
        wait_for(lambda: nth_finished(plane, replica, PROMOTE, before), 120, "the switchover to finish after the crash")
        promoted = wait_for(lambda: active(client, replica), 60, "the new primary to be ACTIVE")
        assert "replica_of" not in promoted
        _sql(promoted, "insert into t values (-2)")
        follower = wait_for(lambda: active(client, source), 60, "the old primary to be ACTIVE")
        assert follower["replica_of"]["id"] == replica  # type: ignore[index]
        wait_for(lambda: _count(client, source) == 1002, 30, "the new primary's row to reach the old one")
        with pytest.raises(pymysql.err.OperationalError, match="read-only"):
            _sql(follower, "insert into t values (-3)")
        plane.stop_workers()

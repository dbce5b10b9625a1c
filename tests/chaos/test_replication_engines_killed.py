"""MariaDB's and Redis's replication survive a worker killed with SIGKILL mid-operation (one step each:
PostgreSQL's chaos tests kill every step of the same workflows, `test_replica_killed.py`,
`test_promote_killed.py`): a replica's create killed once its volume is the snapshot's copy but before its
server started, and a switchover killed right after the roles were swapped (its point of no return). A second
worker finishes each; the replica follows its source, and after the switchover the new primary takes writes and
the old one follows it, refusing writes itself."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pymysql
import pytest
import redis

from tests.chaos.pg_source import active
from tests.chaos.test_replica_killed import SNAPSHOT_STEPS
from tests.chaos.test_worker_killed import crash_and_recover, finished, nth_finished, runs_of
from tests.support.server import ReddwarfProcesses, running_plane, wait_for

USER, PASSWORD = "mia", "chaos-" + secrets.token_hex(4)
PROMOTE = "instance.replica.promote"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-engine-replica", "127.0.181.0/24", REDDWARF_EMBEDDED_WORKERS="0",
                       REDDWARF_LEASE_TTL="1", REDDWARF_REPLICATION_CHECK_INTERVAL="0.5") as procs:
        yield procs


def _address(view: dict[str, object]) -> tuple[str, int]:
    addresses = view["addresses"]
    assert isinstance(addresses, list)
    return str(addresses[0]["address"]), int(str(view["port"]))


def _maria(view: dict[str, object], sql: str, direct: ReddwarfProcesses | None = None) -> object:
    """`sql` at the instance's address, or (`direct`: its plane) its own unix socket (once its set has switched
    over, the founder's address is the writer endpoint and reaches the primary)."""
    host, port = _address(view)
    where: dict[str, Any] = ({"host": host, "port": port} if direct is None
                             else {"unix_socket": str(direct.socket_dir(str(view["id"])) / "mysqld.sock")})
    conn = pymysql.connect(**where, user=USER, password=PASSWORD, database="app", connect_timeout=5, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
    finally:
        conn.close()
    return None if row is None else row[0]


def _redis(view: dict[str, object], *command: str, direct: ReddwarfProcesses | None = None) -> object:
    host, port = _address(view)
    client = (redis.Redis(host=host, port=port, username=USER, password=PASSWORD, socket_timeout=5) if direct is None
              else redis.Redis(unix_socket_path=str(direct.socket_dir(str(view["id"])) / "redis.sock"),
                               username=USER, password=PASSWORD, socket_timeout=5))
    try:
        return client.execute_command(*command)
    finally:
        client.close()


class Rows:
    """A tenant's numbered rows (keys) on one engine: `fill` 1000 of them, `add` one, `count` them."""

    def __init__(self, engine: str, plane: ReddwarfProcesses) -> None:
        self.engine = engine
        self.plane = plane

    def fill(self, view: dict[str, object]) -> None:
        if self.engine == "redis":
            _redis(view, "MSET", *(f"{part}" for n in range(1, 1001) for part in (f"t:{n}", "1")))
            return
        _maria(view, "create table t (id int primary key) engine=InnoDB")
        _maria(view, "insert into t select seq from seq_1_to_1000")

    def add(self, view: dict[str, object], n: int, *, direct: bool = False) -> None:
        """Add row `n` through the instance's address (or, `direct`, its own unix socket)."""
        plane = self.plane if direct else None
        if self.engine == "redis":
            _redis(view, "SET", f"t:{n}", "1", direct=plane)
        else:
            _maria(view, f"insert into t values ({n})", plane)

    def count(self, client: httpx.Client, instance_id: str) -> int:
        view = client.get(f"/instances/{instance_id}").json()["instance"]
        try:
            if self.engine == "redis":  # the instance itself
                return int(str(_redis(view, "DBSIZE", direct=self.plane)))
            return int(str(_maria(view, "select count(*) from t", self.plane)))
        except (pymysql.err.OperationalError, redis.RedisError):
            return -1


@pytest.fixture(params=["mariadb", "redis"])
def source(plane: ReddwarfProcesses, request: pytest.FixtureRequest) -> Iterator[tuple[str, Rows]]:
    engine = str(request.param)
    rows = Rows(engine, plane)
    databases = [] if engine == "redis" else [{"name": "app"}]
    with plane.client() as client:
        response = client.post("/instances", json={"instance": {
            "name": f"{engine}-source", "flavorRef": "1", "volume": {"size": 1}, "databases": databases,
            "datastore": {"type": engine},
            "users": [{"name": USER, "password": PASSWORD, "databases": databases}]}})
        assert response.status_code == 200, response.text
        source_id = str(response.json()["instance"]["id"])
        worker = plane.start_worker()
        view = wait_for(lambda: active(client, source_id), 120, "the source to be ACTIVE")
        rows.fill(view)
        worker.kill()
        worker.wait()
        yield source_id, rows
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


def test_a_replica_create_and_a_switchover_survive_a_killed_worker(
    plane: ReddwarfProcesses, source: tuple[str, Rows]
) -> None:
    source_id, rows = source
    with plane.client() as client:
        response = client.post("/instances", json={"instance": {"name": "chaos-replica", "replica_of": source_id}})
        assert response.status_code == 200, response.text
        replica = str(response.json()["instance"]["id"])
        crash_and_recover(plane, "instance.replica.create", "seed", "after",
                          plane.state_dir / f"crash-{secrets.token_hex(4)}")
        steps = wait_for(lambda: finished(plane, replica, "instance.replica.create"), 120,
                         "the replica's create to finish after the crash")
        # Redis's replica gets its primary's users copied once it answers (replication does not carry them).
        expected = [*SNAPSHOT_STEPS[:7], "accounts", *SNAPSHOT_STEPS[7:]] if rows.engine == "redis" else SNAPSHOT_STEPS
        assert steps == expected, steps
        wait_for(lambda: active(client, replica), 60, "the replica to be ACTIVE")
        rows.add(client.get(f"/instances/{source_id}").json()["instance"], -1)
        wait_for(lambda: rows.count(client, replica) == 1001, 30, "the new row to reach the replica")
        plane.stop_workers()

        # The switchover, killed right after the roles were swapped: the replica is the primary, the source follows.
        before = len(runs_of(plane, replica, PROMOTE))
        assert client.post(f"/instances/{replica}/action", json={"promote_to_replica_source": {}}).status_code == 202
        crash_and_recover(plane, PROMOTE, "swap_roles", "after", plane.state_dir / f"crash-{secrets.token_hex(4)}")
        wait_for(lambda: nth_finished(plane, replica, PROMOTE, before), 120, "the switchover to finish after the crash")
        promoted = wait_for(lambda: active(client, replica), 60, "the new primary to be ACTIVE")
        assert "replica_of" not in promoted
        rows.add(promoted, -2)
        follower = wait_for(lambda: active(client, source_id), 60, "the old primary to be ACTIVE")
        assert follower["replica_of"]["id"] == replica  # type: ignore[index]
        wait_for(lambda: rows.count(client, source_id) == 1002, 30, "the new primary's row to reach the old one")
        with pytest.raises((pymysql.err.OperationalError, redis.exceptions.ReadOnlyError),
                           match=r"(?i)read.only"):
            rows.add(follower, -3, direct=True)
        plane.stop_workers()

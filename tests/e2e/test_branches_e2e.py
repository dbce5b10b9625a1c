"""Branches and snapshots end to end: a real `reddwarf server` whose volumes live on the copy-on-write pool, a
PostgreSQL instance with a tenant's rows, and the CLI: `reddwarf instance branch` (the API's
`restorePoint.instanceRef`) makes a branch ACTIVE with exactly the source's rows, the tenant logging in with
its own password, writes on either side staying there; `reddwarf snapshot create`, more rows on the source,
then `instance branch --snapshot` (`restorePoint.snapshotRef`) gives the rows as they were at the snapshot,
even once the source is deleted; `snapshot delete` leaves that branch intact."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from reddwarf.client import UserRequest
from reddwarf.domain.secret import Secret
from tests.e2e.test_cli_e2e import cli
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses, running_plane

USER, PASSWORD = "dev", "branch me 'please'"


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("branches", "127.0.172.0/24", REDDWARF_LOCAL_USE_COW_POOL="true",
                       REDDWARF_LOCAL_POOL_GB="6") as procs:
        yield procs


def _rows(address: str, port: int, sql: str = "select count(*), sum(v) from t") -> tuple[object, ...]:
    with psycopg.connect(host=address, port=port, user=USER, password=PASSWORD, dbname="app",
                         connect_timeout=5, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return tuple(row)


def test_a_branch_has_its_sources_data_and_a_life_of_its_own(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        created = client.create_instance(unique_name, "1", 1, datastore="postgresql", databases=["app"],
                                         users=[UserRequest(name=USER, password=Secret(PASSWORD), databases=("app",))])
        source = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        assert source.address is not None and source.port is not None
        with psycopg.connect(host=source.address, port=source.port, user=USER, password=PASSWORD, dbname="app",
                             connect_timeout=5, autocommit=True) as conn:
            conn.execute("create table t (id int primary key, v int)")
            conn.execute("insert into t select g, g from generate_series(1, 5000) g")
        expected = _rows(source.address, source.port)

        branched = cli(reddwarf, "instance", "branch", source.id, f"{unique_name}-branch", "--wait")
        assert branched["status"] == "ACTIVE"
        branch = client.get_instance(branched["id"])
        assert branch.address is not None and branch.port is not None
        assert (branch.address, branch.port) != (source.address, source.port)
        assert _rows(branch.address, branch.port) == expected

        _rows(branch.address, branch.port, "insert into t values (-1, 0) returning 1")
        _rows(source.address, source.port, "insert into t values (-2, 0) returning 1")
        assert _rows(source.address, source.port, "select count(*) from t where id = -1") == (0,)
        assert _rows(branch.address, branch.port, "select count(*) from t where id = -2") == (0,)

        snapshot = cli(reddwarf, "snapshot", "create", source.id, "before-more-rows", "--wait")
        assert snapshot["status"] == "COMPLETED" and snapshot["instance_id"] == source.id
        assert [s["id"] for s in cli(reddwarf, "snapshot", "list", "--instance", source.id)] == [snapshot["id"]]
        _rows(source.address, source.port, "insert into t select g, g from generate_series(5001, 6000) g returning 1")

        client.delete_instance(source.id)
        client.wait_for_delete(source.id, timeout=DELETE_TIMEOUT)
        assert _rows(branch.address, branch.port, "select count(*) from t") == (5001,)
        from_snapshot = client.create_instance(f"{unique_name}-snap", "1", 1, snapshot_id=snapshot["id"])
        later = client.wait_for_instance(from_snapshot.id, timeout=ACTIVE_TIMEOUT)
        assert later.address is not None and later.port is not None
        assert _rows(later.address, later.port, "select count(*) from t where id > 0") == (5000,)
        cli(reddwarf, "snapshot", "delete", snapshot["id"], "--wait")
        assert _rows(later.address, later.port, "select count(*) from t where id > 0") == (5000,)
        for made in (branch.id, later.id):
            client.delete_instance(made)
        for made in (branch.id, later.id):
            client.wait_for_delete(made, timeout=DELETE_TIMEOUT)

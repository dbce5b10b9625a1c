"""Branches and snapshots end to end: a real `reddwarf server` whose volumes live on the copy-on-write pool, a
PostgreSQL instance with a tenant's rows, and the CLI: `reddwarf instance branch` (the API's
`restorePoint.instanceRef`) makes a branch ACTIVE with exactly the source's rows, the tenant logging in with
its own password, writes on either side staying there; `reddwarf snapshot create`, more rows on the source,
then `instance branch --snapshot` (`restorePoint.snapshotRef`) gives the rows as they were at the snapshot,
even once the source is deleted; `snapshot delete` leaves that branch intact. A backup `from_snapshot` is
streamed while the instance stays ACTIVE, restores from its kept snapshot, then (the snapshot deleted) from
storage, with the data of the snapshot's moment both times. Without the pool, a branch is made through a
backup and a restore, whose backup goes once the branch is made."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from reddwarf.client import Instance, ReddwarfClient, UserRequest
from reddwarf.domain.secret import Secret
from tests.e2e.test_cli_e2e import cli
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses, running_plane, wait_for

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
        source = _source(client, unique_name, 5000)
        assert source.address is not None and source.port is not None
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


def _source(client: ReddwarfClient, name: str, rows: int) -> Instance:
    created = client.create_instance(name, "1", 1, datastore="postgresql", databases=["app"],
                                     users=[UserRequest(name=USER, password=Secret(PASSWORD), databases=("app",))])
    source = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
    assert source.address is not None and source.port is not None
    with psycopg.connect(host=source.address, port=source.port, user=USER, password=PASSWORD, dbname="app",
                         connect_timeout=5, autocommit=True) as conn:
        conn.execute("create table t (id int primary key, v int)")
        conn.execute(f"insert into t select g, g from generate_series(1, {rows}) g")
    return source


def test_a_backup_from_a_snapshot_restores_from_the_kept_snapshot_then_from_storage(
    reddwarf: ReddwarfProcesses, unique_name: str
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name, 3000)
        assert source.address is not None and source.port is not None
        expected = _rows(source.address, source.port)
        backup = client.backups.create_backup(f"{unique_name}-b", source.id, from_snapshot=True)
        assert backup.snapshot_id is not None
        # While the backup streams (from a throwaway server on a copy of the snapshot), the instance is ACTIVE.
        wait_for(lambda: client.backups.get_backup(backup.id).status != "NEW", 60, "the backup to start streaming")
        _rows(source.address, source.port, "insert into t values (-1, 0) returning 1")  # after the snapshot
        assert client.get_instance(source.id).status == "ACTIVE"
        done = client.backups.wait_for_backup(backup.id, timeout=ACTIVE_TIMEOUT)
        assert done.status == "COMPLETED" and done.instance_id == source.id

        # Restored on this host while the snapshot is kept: a branch of it (events say so), the data at its moment.
        fast = client.create_instance(f"{unique_name}-r1", "1", 1, backup_id=backup.id)
        restored = client.wait_for_instance(fast.id, timeout=ACTIVE_TIMEOUT)
        assert restored.address is not None and restored.port is not None
        assert _rows(restored.address, restored.port) == expected
        cli(reddwarf, "snapshot", "delete", backup.snapshot_id, "--wait")
        # Without it: the backup streamed back from storage, the same data.
        slow = client.create_instance(f"{unique_name}-r2", "1", 1, backup_id=backup.id)
        streamed = client.wait_for_instance(slow.id, timeout=ACTIVE_TIMEOUT)
        assert streamed.address is not None and streamed.port is not None
        assert _rows(streamed.address, streamed.port) == expected
        for made in (source.id, restored.id, streamed.id):
            client.delete_instance(made)
        for made in (source.id, restored.id, streamed.id):
            client.wait_for_delete(made, timeout=DELETE_TIMEOUT)
        client.backups.delete_backup(backup.id)


def test_without_the_pool_a_branch_is_made_through_a_backup_and_a_restore(unique_name: str) -> None:
    with running_plane("branch-no-pool", "127.0.173.0/24", REDDWARF_LOCAL_USE_COW_POOL="false") as plane, \
            plane.tenant() as client:
        version = client.list_datastore_versions("postgresql")[0]
        shown = httpx.get(f"{plane.endpoint}/datastores/versions/{version.id}",
                          headers={"X-Auth-Token": plane.token}, timeout=30).json()["version"]
        assert shown["branches"]["method"] == "backup-and-restore" and shown["branches"]["snapshots"] is False
        source = _source(client, unique_name, 2000)
        assert source.address is not None and source.port is not None
        expected = _rows(source.address, source.port)
        branched = cli(plane, "instance", "branch", source.id, f"{unique_name}-branch", "--wait")
        branch = client.get_instance(branched["id"])
        assert branch.status == "ACTIVE" and branch.address is not None and branch.port is not None
        assert _rows(branch.address, branch.port) == expected
        # The backup taken for it goes once the branch is made.
        wait_for(lambda: client.backups.list_backups() == [], 60, "the branch's backup to be deleted")
        for made in (source.id, branch.id):
            client.delete_instance(made)
        for made in (source.id, branch.id):
            client.wait_for_delete(made, timeout=DELETE_TIMEOUT)

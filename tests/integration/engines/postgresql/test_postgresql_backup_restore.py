"""PostgreSQL backups and restores on real servers run by the local runtime, both versions.

A backup's raw stream goes to a file and is fed back to the restore's tools (storage and workflows are not
part of this): each test checks the restored instance the way a tenant would (rows, checksums, a login with
the tenant's password) and the way an attacker would look (the secrets on any command line while the tools
ran; where a tenant's ALTER SYSTEM tried to move the restored server).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_backup_harness import ArgvWatch, Fleet, Instance, admin_sql, tenant_sql
from tests.contract.host import listener_pid
from tests.integration.runtime.local_runtime_support import Instances

from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.postgresql import PostgresqlEngine

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the local runtime's integration tests need root"),
]

FLAVOR = Flavor(id="1", name="tiny", ram_mb=256, vcpus=1)
TENANT_PASSWORD = "tenant-pw-'\\-never-lost"
# Where the tenant's ALTER SYSTEM tries to move the server (in this module's pool, so nothing else uses it).
TENANT_ADDRESS, TENANT_PORT = "127.0.84.250", 25499
# `hashtextextended` of every row, summed: equal sums over equal counts mean the same rows, whatever order.
CHECKSUM = "SELECT count(*), coalesce(sum(pg_catalog.hashtextextended(t::text, 0)::numeric), 0) FROM {} t"


def spec_of(version: str, volume_gb: int = 1) -> InstanceSpec:
    return InstanceSpec(
        name="bk", flavor_id="1", volume_size_gb=volume_gb, datastore="postgresql", datastore_version=version,
        databases=(DatabaseSpec("shop"),),
        users=(UserSpec("alice", Secret(TENANT_PASSWORD), databases=("shop",)),),
    )  # fmt: skip


@pytest.fixture(params=["15", "18"])
def version(request: pytest.FixtureRequest, engine: PostgresqlEngine) -> DatastoreVersion:
    found = [v for v in engine.versions() if v.name == request.param]
    if not found:
        pytest.skip(f"PostgreSQL {request.param} is not installed")
    return found[0]


@pytest.fixture
def pg18(engine: PostgresqlEngine) -> DatastoreVersion:
    found = [v for v in engine.versions() if v.name == "18"]
    if not found:
        pytest.skip("PostgreSQL 18 is not installed")
    return found[0]


@pytest.fixture
def instances(scratch_root: Path) -> Iterator[Instances]:
    made = Instances(scratch_root)
    try:
        yield made
    finally:
        made.cleanup()


def fleet_of(instances: Instances, engine: PostgresqlEngine, version: DatastoreVersion, scratch: Path) -> Fleet:
    files = scratch / "backups"
    files.mkdir(mode=0o700, exist_ok=True)
    return Fleet(instances, engine, version, files)


def checksum(instance: Instance, table: str, dbname: str = "shop") -> tuple[int, int]:
    ((count, total),) = admin_sql(instance, CHECKSUM.format(table), dbname)
    return int(count), int(total)


def test_a_full_backup_restores_exactly_as_the_new_instances_own_server(
    instances: Instances, engine: PostgresqlEngine, version: DatastoreVersion, scratch_root: Path
) -> None:
    fleet = fleet_of(instances, engine, version, scratch_root)
    spec = spec_of(version.name)
    source = fleet.create(spec, FLAVOR)
    create = "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 20000) g"
    tenant_sql(source, "alice", TENANT_PASSWORD, "shop", create)
    expected = checksum(source, "orders")
    assert expected[0] == 20000
    # A superuser's ALTER SYSTEM (as a tenant with `root_superuser` could) rides along in postgresql.auto.conf.
    admin_sql(source, f"ALTER SYSTEM SET listen_addresses = '{TENANT_ADDRESS}'")
    admin_sql(source, f"ALTER SYSTEM SET port = {TENANT_PORT}")

    watch = ArgvWatch(secrets=[source.admin.reveal(), TENANT_PASSWORD], tools=["pg_basebackup", "tar -x"])
    with watch.watching():
        full = fleet.backup(source)
        assert full.result.metadata["start_lsn"] and full.result.metadata["timeline"] == 1
        restored = fleet.restore(spec, FLAVOR, [full], source.admin)
        watch.secrets = [*watch.secrets, restored.admin.reveal()]
    assert watch.hits == [] and watch.scans > 0
    assert watch.seen.get("pg_basebackup", 0) > 0  # the scan ran while the tool did

    assert checksum(restored, "orders") == expected
    assert tenant_sql(restored, "alice", TENANT_PASSWORD, "shop", "SELECT count(*) FROM orders") == [(20000,)]
    # The restored server is the new instance's: where the new placement says, not where the tenant said.
    assert admin_sql(restored, "SHOW listen_addresses") == [(restored.placement.address,)]
    assert admin_sql(restored, "SHOW port") == [(str(restored.placement.port),)]
    assert listener_pid(TENANT_ADDRESS, TENANT_PORT) is None
    assert listener_pid(restored.placement.address, restored.placement.port) is not None
    # adopt() rotated the admin password: the source's no longer logs in, the new one does; again is a no-op.
    assert not engine.probe(restored.placement, engine.admin_user, source.admin)
    engine.backups(version).adopt(restored.placement, source.admin, restored.admin)
    assert engine.probe(restored.placement, engine.admin_user, restored.admin)
    # A verification's checks (`Backups.check`): amcheck on every B-tree index of every database.
    checked = engine.backups(version).check(restored.placement, restored.admin, 60.0)
    assert "databases answered; amcheck bt_index_check on" in checked, checked
    # An index of the tenant's damaged on disk (page 1, with the server stopped): the check fails naming it.
    shop = ("alice", TENANT_PASSWORD, "shop")
    tenant_sql(restored, *shop, "CREATE INDEX orders_id ON orders (id)")
    relpath = tenant_sql(restored, *shop, "SELECT pg_relation_filepath('orders_id')")[0][0]
    fleet.runtime.stop(restored.placement, restored.workload)
    with open(Path(restored.placement.data_dir, relpath), "r+b") as index:
        index.seek(8192 + 512)
        index.write(b"\xff" * 256)
    fleet.start(restored)
    with pytest.raises(PermanentError, match="'shop'") as damaged:
        engine.backups(version).check(restored.placement, restored.admin, 60.0)
    assert "invalid page" in damaged.value.message or "checksum" in damaged.value.message, damaged.value.message


def test_pg15_incrementals_are_wal_based_and_its_server_archives(
    instances: Instances, engine: PostgresqlEngine, scratch_root: Path
) -> None:
    version = next((v for v in engine.versions() if v.name == "15"), None)
    if version is None:
        pytest.skip("PostgreSQL 15 is not installed")
    backups = engine.backups(version)
    assert backups.strategies().incremental == "pg_wal_incremental"
    fleet = fleet_of(instances, engine, version, scratch_root)
    source = fleet.create(spec_of("15"), FLAVOR)
    # Archiving is pinned on the command line: a server started with it can take incrementals at once.
    assert backups.incremental_blocker(source.placement, source.admin) is None
    assert admin_sql(source, "SELECT current_setting('archive_mode')") == [("on",)]
    assert admin_sql(source, "SELECT current_setting('summarize_wal', true)") == [(None,)]


def test_an_incremental_needs_summarized_wal_and_says_to_restart(
    instances: Instances, engine: PostgresqlEngine, pg18: DatastoreVersion, scratch_root: Path
) -> None:
    fleet = fleet_of(instances, engine, pg18, scratch_root)
    backups = engine.backups(pg18)
    current = fleet.create(spec_of("18"), FLAVOR)
    assert backups.incremental_blocker(current.placement, current.admin) is None
    older = fleet.create(spec_of("18"), FLAVOR, summarize_wal=False)  # an instance from before this change
    reason = backups.incremental_blocker(older.placement, older.admin)
    assert reason is not None and reason.startswith("restart the instance to enable incremental backups")
    parent = fleet.backup(older)
    assert parent.result.metadata["summarize_wal"] is False
    with pytest.raises(PermanentError, match="restart the instance"):
        backups.backup(older.placement, older.admin, parent.parent()).prepare()
    # Restarted with the configuration of today: a parent taken before that cannot be built on; a new one can.
    fleet.runtime.stop(older.placement, older.workload)
    older.workload = engine.workload(spec_of("18"), pg18, FLAVOR, older.placement, older.admin)
    fleet.start(older)
    assert backups.incremental_blocker(older.placement, older.admin) is None
    with pytest.raises(PermanentError, match="before WAL summarization was on"):
        backups.backup(older.placement, older.admin, parent.parent()).prepare()
    fleet.backup(older, parent=fleet.backup(older))


def test_an_incremental_is_small_and_its_chain_restores_exactly(
    instances: Instances, engine: PostgresqlEngine, pg18: DatastoreVersion, scratch_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    fleet = fleet_of(instances, engine, pg18, scratch_root)
    flavor = Flavor(id="2", name="small", ram_mb=512, vcpus=1)
    spec = spec_of("18", volume_gb=2)
    source = fleet.create(spec, flavor)
    rows = 1_000_000  # ~100 MB of heap
    admin_sql(source, "CREATE TABLE t (id bigint PRIMARY KEY, payload text NOT NULL)", "shop")
    admin_sql(source, f"INSERT INTO t SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, {rows}) g", "shop")
    admin_sql(source, "VACUUM (ANALYZE) t", "shop")
    ((size,),) = admin_sql(source, "SELECT pg_table_size('t')", "shop")
    assert 90e6 < size < 140e6
    full = fleet.backup(source)

    # 1 % new rows and a contiguous 1 % range of keys updated.
    low, high = rows // 2, rows // 2 + rows // 100 - 1
    admin_sql(source, f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series({rows + 1}, {rows * 101 // 100}) g",
              "shop")  # fmt: skip
    admin_sql(source, f"UPDATE t SET payload = md5(payload) WHERE id BETWEEN {low} AND {high}", "shop")
    expected = checksum(source, "t")
    incremental = fleet.backup(source, parent=full)
    assert incremental.result.metadata["incremental"] and incremental.result.metadata["parent_id"] == full.backup_id
    assert incremental.raw_bytes <= 0.20 * full.raw_bytes, (incremental.raw_bytes, full.raw_bytes)

    restored = fleet.restore(spec, flavor, [full, incremental], source.admin)
    assert checksum(restored, "t") == expected
    assert expected[0] == rows * 101 // 100
    assert tenant_sql(restored, "alice", TENANT_PASSWORD, "shop", "SELECT 1") == [(1,)]
    with capsys.disabled():
        print(
            f"\n[pg18 incremental] full {full.raw_bytes / 1e6:.1f} MB in {full.seconds:.1f}s, incremental "
            f"{incremental.raw_bytes / 1e6:.1f} MB ({incremental.raw_bytes / full.raw_bytes:.1%}) in "
            f"{incremental.seconds:.1f}s; whole test {time.monotonic() - started:.1f}s"
        )


@pytest.mark.parametrize("links", [1, 2])
def test_a_restore_whose_init_is_rerun_after_a_crash_starts_again_from_the_staged_backups(
    instances: Instances, engine: PostgresqlEngine, pg18: DatastoreVersion, scratch_root: Path, links: int
) -> None:
    fleet = fleet_of(instances, engine, pg18, scratch_root)
    spec = spec_of("18")
    source = fleet.create(spec, FLAVOR)
    create = "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 5000) g"
    tenant_sql(source, "alice", TENANT_PASSWORD, "shop", create)
    chain = [fleet.backup(source)]
    if links == 2:
        tenant_sql(source, "alice", TENANT_PASSWORD, "shop", "UPDATE t SET id = -id WHERE id <= 100")
        chain.append(fleet.backup(source, parent=chain[0]))
    expected = checksum(source, "t")
    restored = fleet.restore(spec, FLAVOR, chain, source.admin, crash_before_marker=True)
    assert checksum(restored, "t") == expected
    assert not (Path(restored.placement.scratch_dir) / "restore").exists()


def test_a_restore_from_a_damaged_stream_fails_before_any_server_starts(
    instances: Instances, engine: PostgresqlEngine, pg18: DatastoreVersion, scratch_root: Path
) -> None:
    fleet = fleet_of(instances, engine, pg18, scratch_root)
    source = fleet.create(spec_of("18"), FLAVOR)
    full = fleet.backup(source)
    # Flip bytes inside a relation file's content (a catalog's first page): tar still reads, the manifest
    # does not match: pg_verifybackup refuses it in the init commands.
    data = bytearray(full.path.read_bytes())
    at = data.find(b"base/1/1259\0")
    assert at > 0
    data[at + 512 + 100 : at + 512 + 108] = b"\xff" * 8
    full.path.write_bytes(bytes(data))
    with pytest.raises(PermanentError, match=r"init command pg_verifybackup"):
        fleet.restore(spec_of("18"), FLAVOR, [full], source.admin)


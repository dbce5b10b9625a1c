"""MariaDB 10.11 backups and restores with real servers on the local runtime (`tests.support.backup_runtime`).

A backup's raw stream goes into a file and is fed back to a new instance's restore, as the workflows do
through storage. The tenant's data must come back exactly (row counts and CHECKSUM TABLE), the tenant logs in
with its password, the restored server answers only to the new admin password, and no admin password ever
appears on a command line. The incremental test fills a ~100 MB InnoDB table.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from tests.support.backup_runtime import ArgvWatch, EngineInstances, Running
from tests.support.local_instances import Instances
from tests.support.server import wait_for

from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.mariadb import MariadbEngine, admin
from reddwarf.engines.mariadb.backup import FULL_STRATEGY, INCREMENTAL_STRATEGY

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("backups run their tools as the instance's OS user: the local runtime needs root",
                allow_module_level=True)

FLAVOR = Flavor(id="2", name="small", ram_mb=512, vcpus=1)
TENANT = UserSpec("app_user", Secret("tenant-Pw-1234"), databases=("app",))
SPEC = InstanceSpec(
    name="backup-source", flavor_id=FLAVOR.id, volume_size_gb=1, datastore="mariadb",
    datastore_version="10.11", databases=(DatabaseSpec("app"),), users=(TENANT,),
)
BIG_ROWS = 400_000  # ~100 MB of InnoDB pages


@pytest.fixture
def instances(scratch_root: Path) -> Iterator[Instances]:
    made = Instances(scratch_root)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def servers(instances: Instances, engine: MariadbEngine, mariadb1011: DatastoreVersion) -> Iterator[EngineInstances]:
    made = EngineInstances(instances, engine, mariadb1011, FLAVOR, volume_gb=1)
    try:
        yield made
    finally:
        made.stop_all()


def tenant_sql(running: Running, sql: str, user: UserSpec = TENANT) -> Any:
    """Run statements as the tenant over TCP (what a tenant's client does); the last one's rows."""
    conn = pymysql.connect(
        host=running.placement.address, port=running.placement.port, user=user.name,
        password=user.password.reveal(), database="app", autocommit=True, connect_timeout=5, read_timeout=600,
        ssl_disabled=True,
    )
    try:
        with conn.cursor() as cursor:
            rows: Any = None
            for statement in sql.split(";\n"):
                if statement.strip():
                    cursor.execute(statement)
                    rows = cursor.fetchall()
            return rows
    finally:
        conn.close()


def admin_sql(running: Running, sql: str, params: tuple[object, ...] | None = None) -> Any:
    where = admin.target(running.placement, "reddwarf_admin", running.admin, timeout=30.0)
    with admin.session(where) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def fingerprint(running: Running) -> dict[str, Any]:
    """Every tenant table's row count and CHECKSUM TABLE."""
    tables = [name for (name,) in tenant_sql(running, "SHOW TABLES")]
    found: dict[str, Any] = {}
    for table in sorted(tables):
        count = tenant_sql(running, f"SELECT COUNT(*) FROM `{table}`")[0][0]
        checksum = tenant_sql(running, f"CHECKSUM TABLE `{table}` EXTENDED")[0][1]
        found[table] = (count, checksum)
    return found


def write_small(running: Running) -> None:
    tenant_sql(running, """CREATE TABLE ledger (id INT PRIMARY KEY, who VARCHAR(40), amount DECIMAL(12,2),
        at DATETIME(6), note TEXT) ENGINE=InnoDB;
        INSERT INTO ledger SELECT seq, CONCAT('payee-', seq), seq * 1.25, '2026-01-01' + INTERVAL seq SECOND,
        REPEAT(CHAR(65 + seq % 26), seq % 300) FROM seq_1_to_3000;
        CREATE TABLE tags (k VARCHAR(20) PRIMARY KEY, v BLOB) ENGINE=Aria;
        INSERT INTO tags VALUES ('a', x'00ff10'), ('b', NULL), ('ü', 'naïve')""")


def checkpointed(running: Running) -> None:
    """Flush InnoDB until its checkpoint has caught up with the log (as on a server whose load is long done).

    A full backup records the last checkpoint as its `to_lsn`, and its incremental copies every page written
    after it again, so a full backup taken right after a bulk load would make its first incremental carry the
    whole load."""
    settings = ("innodb_io_capacity_max = 100000", "innodb_io_capacity = 50000", "innodb_max_dirty_pages_pct = 0")
    for setting in settings:
        admin_sql(running, f"SET GLOBAL {setting}")
    try:
        wait_for(lambda: int(admin_sql(running, "SHOW GLOBAL STATUS LIKE 'Innodb_checkpoint_age'")[0][1]) < 1 << 20,
                 120.0, "InnoDB's checkpoint to catch up")
    finally:
        for setting in settings:
            admin_sql(running, f"SET GLOBAL {setting.partition(' ')[0]} = DEFAULT")


def admin_hosts(running: Running) -> list[tuple[str, str]]:
    rows = admin_sql(running, "SELECT User, Host FROM mysql.global_priv WHERE User = %s ORDER BY Host",
                     ("reddwarf_admin",))
    return [(str(user), str(host)) for user, host in rows]


def socket_accounts(running: Running) -> list[tuple[str, str]]:
    """The accounts that log in through unix_socket and are not locked."""
    rows = admin_sql(running, "SELECT User, Host, Priv FROM mysql.global_priv")
    return sorted(
        (str(user), str(host)) for user, host, text in rows
        if json.loads(text).get("plugin") == "unix_socket" and not json.loads(text).get("account_locked")
    )


def test_full_backup_restores_exactly_into_a_new_instance_that_is_its_own(
    servers: EngineInstances, engine: MariadbEngine, scratch_root: Path
) -> None:
    source = servers.create(SPEC)
    write_small(source)
    before = fingerprint(source)
    assert before["ledger"][0] == 3000

    watch = ArgvWatch([source.admin.reveal()])
    with watch.running():
        full = servers.take_backup(source, scratch_root / "full.xb")
    assert full.strategy == FULL_STRATEGY
    assert full.result.metadata["from_lsn"] == 0 and full.result.metadata["to_lsn"] > 0
    assert full.result.metadata["version"] == "10.11"
    assert str(full.result.metadata["server_version"]).startswith("10.11")
    # The backup account: the source's own OS user, over the socket, with exactly the tool's privileges.
    assert socket_accounts(source) == [(source.placement.os_user, "localhost")]
    grants = admin_sql(source, f"SHOW GRANTS FOR '{source.placement.os_user}'@'localhost'")
    assert "GRANT RELOAD, PROCESS, BINLOG MONITOR ON *.*" in grants[0][0]
    # ...invisible to the tenant's account listings, and its name not available to tenants.
    accounts = engine.accounts(source.placement, source.admin)
    assert source.placement.os_user not in [user.name for user in accounts.list_users()]
    with pytest.raises(BadRequest):
        accounts.create_users([UserSpec(source.placement.os_user, Secret("Another-pw-123"))])
    # A bootstrap again (as a restore does) leaves the backup account usable.
    engine.bootstrap(SPEC, source.placement, source.admin)
    assert socket_accounts(source) == [(source.placement.os_user, "localhost")]

    tenant_sql(source, "INSERT INTO ledger VALUES (999999, 'after', 1, NOW(), 'not in the backup')")

    new_admin = Secret(secrets.token_urlsafe(24))
    with ArgvWatch([source.admin.reveal(), new_admin.reveal()]).running() as restore_watch:
        restored = servers.restore(SPEC, [full], source.admin, new_admin)
    assert fingerprint(restored) == before
    assert tenant_sql(restored, "SELECT CURRENT_USER()")[0][0] == "app_user@%"

    # The restored server is the new instance's own: only the new admin password, on the new address.
    assert engine.probe(restored.placement, "reddwarf_admin", restored.admin)
    assert not engine.probe(restored.placement, "reddwarf_admin", source.admin)
    hosts = {host for _, host in admin_hosts(restored)}
    assert hosts == {"127.0.0.1", "localhost", restored.placement.address}
    assert socket_accounts(restored) == [(restored.placement.os_user, "localhost")]
    # Idempotent: again, it logs in with the new password and changes nothing.
    snapshot = admin_sql(restored, "SELECT User, Host, Priv FROM mysql.global_priv ORDER BY User, Host")
    engine.backups(servers.version).adopt(restored.placement, source.admin, restored.admin)
    assert admin_sql(restored, "SELECT User, Host, Priv FROM mysql.global_priv ORDER BY User, Host") == snapshot
    # A verification's checks (`Backups.check`): CHECK TABLE passes on every table, the tenant's and mysql's.
    checked = engine.backups(servers.version).check(restored.placement, restored.admin, 60.0)
    tables = int(checked.split("CHECK TABLE passed on ")[1].split()[0])
    assert tables > 20, checked  # mysql's and the tenant's (ledger)

    # Nobody's command line ever held an admin password, while the tools ran.
    assert not watch.leaks and not restore_watch.leaks
    assert "mariadb-backup" in watch.seen
    assert {"mbstream", "mariadb-backup"} <= restore_watch.seen

    # An incremental can be taken while the server answers; a stopped one gets a reason.
    backups = engine.backups(servers.version)
    assert backups.incremental_blocker(source.placement, source.admin) is None
    servers.runtime.stop(source.placement, source.workload)
    assert "does not answer" in str(backups.incremental_blocker(source.placement, source.admin))


def test_incremental_of_a_100mb_table_is_small_and_its_chain_restores_exactly(
    servers: EngineInstances, scratch_root: Path
) -> None:
    source = servers.create(SPEC)
    began = time.monotonic()
    tenant_sql(source, "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(255)) ENGINE=InnoDB")
    chunk = BIG_ROWS // 8  # transactions of a few MB of undo each: the system tablespace stays small
    for first in range(1, BIG_ROWS, chunk):
        tenant_sql(source, f"""INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq + 1), MD5(seq + 2),
            MD5(seq + 3), MD5(seq + 4), MD5(seq + 5), MD5(seq + 6)) FROM seq_{first}_to_{first + chunk - 1}""")
    checkpointed(source)
    loaded = time.monotonic()
    full = servers.take_backup(source, scratch_root / "full.xb")
    full_done = time.monotonic()

    # 1 % new rows, and a contiguous 1 % key range updated.
    step = BIG_ROWS // 100
    tenant_sql(source, f"""INSERT INTO big SELECT seq, REPEAT('n', 200) FROM seq_{BIG_ROWS + 1}_to_{BIG_ROWS + step};
        UPDATE big SET pad = REPEAT('u', 220) WHERE id BETWEEN 100001 AND {100000 + step}""")
    after = fingerprint(source)
    incremental = servers.take_backup(source, scratch_root / "inc.xb", parent=full)
    inc_done = time.monotonic()
    assert incremental.strategy == INCREMENTAL_STRATEGY
    assert incremental.result.metadata["from_lsn"] == full.result.metadata["to_lsn"]
    assert "gtid" in incremental.result.metadata  # None: these servers write no binlog
    ratio = incremental.raw_bytes / full.raw_bytes
    print(f"\nfull {full.raw_bytes / 1e6:.1f} MB, incremental {incremental.raw_bytes / 1e6:.1f} MB "
          f"({ratio:.1%}); load and checkpoint {loaded - began:.1f}s, full {full_done - loaded:.1f}s, "
          f"incremental {inc_done - full_done:.1f}s")
    assert full.raw_bytes > 100e6
    assert ratio <= 0.20

    restored = servers.restore(SPEC, [full, incremental], source.admin)
    print(f"restore of the chain {time.monotonic() - inc_done:.1f}s")
    assert fingerprint(restored) == after
    assert after["big"][0] == BIG_ROWS + step

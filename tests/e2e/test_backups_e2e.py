"""Backups through the whole house, as a hostile tenant would probe them: while a backup, an incremental and a
restore run, no process on the host shows a secret (the tenant's password, the instance's admin password) on its
command line; an instance's OS user can read no backup artifact. (Every engine's round trips, data compared
exactly, are in the conformance suite: tests/contract/test_backups.py.)
"""

from __future__ import annotations

import secrets as secrets_module
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from reddwarf.client import UserRequest
from reddwarf.client.http import ReddwarfClient
from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.store.database import Database
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses

BACKUP_TIMEOUT = 180.0
PASSWORD = "tenant-pw-" + secrets_module.token_hex(6)


@contextmanager
def _argv_watch(secrets: list[str]) -> Iterator[list[str]]:
    """Scan every process's command line until the block ends; yields the offending lines found."""
    found: list[str] = []
    stop = threading.Event()

    def scan() -> None:
        while not stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                except OSError:
                    continue
                if any(secret in argv for secret in secrets):
                    found.append(argv)
            stop.wait(0.01)

    thread = threading.Thread(target=scan, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()


def _admin_password(reddwarf: ReddwarfProcesses, instance_id: str) -> str:
    control = reddwarf.state_dir / "control"
    db = Database.from_url(f"sqlite:///{control / 'reddwarf.db'}", key_file=control / "secret.key")
    try:
        with db.unit_of_work(write=False) as uow:
            secret = uow.secrets.get(instance_id, ADMIN_SECRET)
    finally:
        db.dispose()
    assert secret is not None
    return secret.reveal()


def _restore(client: ReddwarfClient, name: str, backup_id: str) -> tuple[str, str]:
    created = client.create_instance(name, "1", 1, backup_id=backup_id)
    view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
    assert view.address is not None
    return view.id, view.address


def test_no_secret_on_a_command_line_and_no_backup_readable_by_an_instance_user(
    reddwarf: ReddwarfProcesses, unique_name: str
) -> None:
    with reddwarf.tenant() as client:
        created = client.create_instance(
            unique_name, "1", 1, datastore="postgresql", version="15", databases=["app"],
            users=[UserRequest(name="alice", password=Secret(PASSWORD), databases=("app",))],
        )
        source = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        secrets = [PASSWORD, _admin_password(reddwarf, source.id)]
        restored: list[str] = []
        try:
            with _argv_watch(secrets) as leaked:
                full = client.backups.create_backup(f"{unique_name}-full", source.id)
                client.backups.wait_for_backup(full.id, timeout=BACKUP_TIMEOUT)
                incremental = client.backups.create_backup(f"{unique_name}-inc", source.id, incremental=True)
                client.backups.wait_for_backup(incremental.id, timeout=BACKUP_TIMEOUT)
                copy_id, _ = _restore(client, f"{unique_name}-r", incremental.id)
                restored.append(copy_id)
            assert leaked == []
            # The artifacts sit in the control plane's 0700 directory: the instance's OS user reads none.
            user = reddwarf.os_user(source.id)
            artifacts = [p for p in (reddwarf.state_dir / "control" / "backups").rglob("*") if p.is_file()]
            assert artifacts
            for path in artifacts[:3]:
                attempt = subprocess.run(["runuser", "-u", user, "--", "cat", str(path)], capture_output=True,
                                         check=False, timeout=30)
                assert attempt.returncode != 0 and b"Permission denied" in attempt.stderr
        finally:
            for instance_id in [source.id, *restored]:
                client.delete_instance(instance_id)
            for instance_id in [source.id, *restored]:
                client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)
            client.backups.delete_backup(full.id)


def test_a_postgresql_15_incremental_is_the_wal_since_its_parent_and_small(
    reddwarf: ReddwarfProcesses, unique_name: str
) -> None:
    """~100 MB table; 1 % new rows and a contiguous 1 % of the keys updated: the WAL-based incremental's
    uncompressed size is at most 20 % of its parent's (the block-level ones are asserted per engine in
    tests/integration/engines)."""
    with reddwarf.tenant() as client:
        created = client.create_instance(
            unique_name, "1", 2, datastore="postgresql", version="15", databases=["app"],
            users=[UserRequest(name="alice", password=Secret(PASSWORD), databases=("app",))],
        )
        source = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        assert source.address is not None
        rows = 1_000_000

        def sql(statement: str) -> None:
            with psycopg.connect(host=source.address, port=5432, user="alice", password=PASSWORD, dbname="app",
                                 autocommit=True, connect_timeout=5) as conn:
                conn.execute(statement)

        try:
            sql("create table t (id int primary key, v text)")
            sql(f"insert into t select g, md5(g::text) from generate_series(1, {rows}) g")
            full = client.backups.wait_for_backup(client.backups.create_backup("full", source.id).id, timeout=300)
            sql(f"insert into t select g, md5(g::text) from generate_series({rows + 1}, {rows + rows // 100}) g")
            sql(f"update t set v = v || 'x' where id between 400000 and {400000 + rows // 100 - 1}")
            step = client.backups.create_backup("inc", source.id, incremental=True)
            incremental = client.backups.wait_for_backup(step.id, timeout=300)
            assert full.uncompressed_size is not None and incremental.uncompressed_size is not None
            ratio = incremental.uncompressed_size / full.uncompressed_size
            print(f"\n[pg15 wal incremental] full {full.uncompressed_size * 1024:.1f} MB, "
                  f"incremental {incremental.uncompressed_size * 1024:.1f} MB ({ratio:.1%})")
            assert ratio <= 0.20
        finally:
            client.delete_instance(source.id)
            client.wait_for_delete(source.id, timeout=DELETE_TIMEOUT)
            client.backups.delete_backup(full.id)

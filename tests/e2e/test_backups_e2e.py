"""Backups and restores of every engine version through the whole house, with real servers: write rows, a
full backup, write more, an incremental, write more; restore each point into a new instance and compare the
data exactly (row counts and checksums, keys and values), and a tenant user logs in with its password.
While a backup and a restore run, no process on the host shows a secret on its command line, and an instance's
OS user can read no backup artifact.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymysql
import pytest
import redis

from reddwarf.client import ReddwarfAPIError, UserRequest
from reddwarf.client.http import ReddwarfClient
from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.store.database import Database
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses

BACKUP_TIMEOUT = 180.0
PASSWORD = "tenant-pw-" + hashlib.sha256(os.urandom(8)).hexdigest()[:12]


@dataclass(frozen=True)
class Engine:
    datastore: str
    version: str
    incremental: bool
    write: Callable[[str, int, int], None]
    read: Callable[[str], tuple[int, str]]
    databases: tuple[str, ...] = ("app",)


def _pg_write(address: str, first: int, count: int) -> None:
    with psycopg.connect(host=address, port=5432, user="alice", password=PASSWORD, dbname="app",
                         connect_timeout=5, autocommit=True) as conn:
        conn.execute("create table if not exists t (id int primary key, v text)")
        conn.execute("insert into t select g, md5(g::text) from generate_series(%s, %s) g", (first, first + count - 1))


def _pg_read(address: str) -> tuple[int, str]:
    with psycopg.connect(host=address, port=5432, user="alice", password=PASSWORD, dbname="app",
                         connect_timeout=5) as conn:
        row = conn.execute("select count(*), coalesce(md5(string_agg(id || ':' || v, ',' order by id)), '') from t")
        found = row.fetchone()
        assert found is not None
        return int(found[0]), str(found[1])


def _maria_conn(address: str) -> pymysql.Connection:  # type: ignore[type-arg]
    return pymysql.connect(host=address, port=3306, user="alice", password=PASSWORD, database="app",
                           connect_timeout=5, autocommit=True)


def _maria_write(address: str, first: int, count: int) -> None:
    conn = _maria_conn(address)
    try:
        with conn.cursor() as cur:
            cur.execute("create table if not exists t (id int primary key, v varchar(64)) engine=InnoDB")
            cur.executemany("insert into t values (%s, md5(%s))", [(i, i) for i in range(first, first + count)])
    finally:
        conn.close()


def _maria_read(address: str) -> tuple[int, str]:
    conn = _maria_conn(address)
    try:
        with conn.cursor() as cur:
            cur.execute("set session group_concat_max_len = 16777216")
            cur.execute("select count(*), coalesce(md5(group_concat(concat(id, ':', v) order by id)), '') from t")
            found = cur.fetchone()
            assert found is not None
            return int(found[0]), str(found[1])
    finally:
        conn.close()


def _redis(address: str) -> redis.Redis:
    return redis.Redis(host=address, port=6379, username="alice", password=PASSWORD, socket_timeout=5)


def _redis_write(address: str, first: int, count: int) -> None:
    client = _redis(address)
    try:
        client.mset({f"k:{i}": hashlib.md5(str(i).encode()).hexdigest() for i in range(first, first + count)})
    finally:
        client.close()


def _redis_read(address: str) -> tuple[int, str]:
    client = _redis(address)
    try:
        keys = sorted(key.decode() for key in client.scan_iter("k:*", count=1000))
        values = client.mget(keys) if keys else []
        digest = hashlib.md5(",".join(f"{k}={v!r}" for k, v in zip(keys, values, strict=True)).encode()).hexdigest()
        return len(keys), digest if keys else ""
    finally:
        client.close()


ENGINES = [
    Engine("postgresql", "15", True, _pg_write, _pg_read),
    Engine("postgresql", "18", True, _pg_write, _pg_read),
    Engine("mariadb", "10.11", True, _maria_write, _maria_read),
    Engine("redis", "7.0", False, _redis_write, _redis_read, databases=()),
]


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


@pytest.mark.parametrize("engine", ENGINES, ids=[f"{e.datastore}-{e.version}" for e in ENGINES])
def test_full_and_incremental_backups_restore_exactly(
    reddwarf: ReddwarfProcesses, unique_name: str, engine: Engine
) -> None:
    with reddwarf.tenant() as client:
        created = client.create_instance(
            unique_name, "1", 1, datastore=engine.datastore, version=engine.version, databases=list(engine.databases),
            users=[UserRequest(name="alice", password=Secret(PASSWORD), databases=engine.databases)],
        )
        source = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        assert source.address is not None
        engine.write(source.address, 1, 200)
        at_full = engine.read(source.address)
        secrets = [PASSWORD, _admin_password(reddwarf, source.id)]
        with _argv_watch(secrets) as leaked:
            full = client.create_backup(f"{unique_name}-full", source.id)
            client.wait_for_backup(full.id, timeout=BACKUP_TIMEOUT)
        assert leaked == []
        engine.write(source.address, 201, 100)
        at_incremental = engine.read(source.address)
        incremental_id = None
        if engine.incremental:
            incremental = client.create_backup(f"{unique_name}-inc", source.id, incremental=True)
            done = client.wait_for_backup(incremental.id, timeout=BACKUP_TIMEOUT)
            assert done.parent_id == full.id
            incremental_id = done.id
        else:
            with pytest.raises(ReddwarfAPIError) as refused:
                client.create_backup(f"{unique_name}-inc", source.id, incremental=True)
            assert refused.value.status == 400
        engine.write(source.address, 301, 50)
        restored: list[str] = []
        try:
            with _argv_watch(secrets) as leaked:
                copy_id, copy_address = _restore(client, f"{unique_name}-r1", full.id)
            restored.append(copy_id)
            assert leaked == []
            assert engine.read(copy_address) == at_full  # the tenant logs in with its own password
            if incremental_id is not None:
                copy_id, copy_address = _restore(client, f"{unique_name}-r2", incremental_id)
                restored.append(copy_id)
                assert engine.read(copy_address) == at_incremental
        finally:
            for instance_id in [source.id, *restored]:
                client.delete_instance(instance_id)
            for instance_id in [source.id, *restored]:
                client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)
        # A backup outlives its instance, and deleting the full one takes its incremental with it.
        assert client.get_backup(full.id).status == "COMPLETED"
        client.delete_backup(full.id)
        client.wait_for_backup_delete(full.id, timeout=DELETE_TIMEOUT)
        if incremental_id is not None:
            with pytest.raises(ReddwarfAPIError) as gone:
                client.get_backup(incremental_id)
            assert gone.value.status == 404


def test_an_instance_user_reads_no_backup(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        created = client.create_instance(unique_name, "1", 1, datastore="postgresql", version="15")
        view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        backup = client.create_backup(unique_name, view.id)
        client.wait_for_backup(backup.id, timeout=BACKUP_TIMEOUT)
        try:
            user = reddwarf.os_user(view.id)
            artifacts = [p for p in (reddwarf.state_dir / "control" / "backups").rglob("*") if p.is_file()]
            assert artifacts
            for path in artifacts[:3]:
                attempt = subprocess.run(["runuser", "-u", user, "--", "cat", str(path)], capture_output=True,
                                         check=False, timeout=30)
                assert attempt.returncode != 0 and b"Permission denied" in attempt.stderr
        finally:
            client.delete_instance(view.id)
            client.wait_for_delete(view.id, timeout=DELETE_TIMEOUT)
            client.delete_backup(backup.id)

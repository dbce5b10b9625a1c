"""Backups and restores conformance, for every engine version and each of its backup strategies: write rows,
a full backup, write more, an incremental (where the version has one), write more; restore each point into a
new instance and compare the data exactly (row counts and checksums, keys and values), logged in as the
tenant's own user with its password. A strategy test is skipped (untested) for a version that does not
declare it; each strategy's classification comes from these results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pymysql
import pytest
import redis

from reddwarf.client import ReddwarfClient, UserRequest
from reddwarf.domain.secret import Secret
from tests.contract.targets import Target
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses
from tests.support.skips import not_applicable

BACKUP_TIMEOUT = 180.0
USER, PASSWORD, DATABASE = "carol", "backup's own 'pw'", "app"
FULL = ("pg_basebackup", "mariadb_backup", "redis_rdb")
# Each incremental strategy and the full one its chain starts from: its test restores both points, so it
# counts for both, and a version with an incremental strategy runs no separate full-only round trip.
INCREMENTAL = {
    "pg_basebackup_incremental": "pg_basebackup",
    "pg_wal_incremental": "pg_basebackup",
    "mariadb_backup_incremental": "mariadb_backup",
}


@dataclass(frozen=True)
class Data:
    """How a tenant writes numbered rows (keys) and reads back their count and checksum."""

    write: Callable[[str, int, int, int], None]
    read: Callable[[str, int], tuple[int, str]]
    databases: tuple[str, ...]


def _pg_write(address: str, port: int, first: int, count: int) -> None:
    with psycopg.connect(host=address, port=port, user=USER, password=PASSWORD, dbname=DATABASE,
                         connect_timeout=5, autocommit=True) as conn:
        conn.execute("create table if not exists t (id int primary key, v text)")
        conn.execute("insert into t select g, md5(g::text) from generate_series(%s::int, %s::int) g",
                     (first, first + count - 1))


def _pg_read(address: str, port: int) -> tuple[int, str]:
    with psycopg.connect(host=address, port=port, user=USER, password=PASSWORD, dbname=DATABASE,
                         connect_timeout=5) as conn:
        found = conn.execute("select count(*), md5(string_agg(id || ':' || v, ',' order by id)) from t").fetchone()
    assert found is not None
    return int(found[0]), str(found[1])


def _maria(address: str, port: int) -> pymysql.Connection:  # type: ignore[type-arg]
    return pymysql.connect(host=address, port=port, user=USER, password=PASSWORD, database=DATABASE,
                           connect_timeout=5, autocommit=True)


def _maria_write(address: str, port: int, first: int, count: int) -> None:
    conn = _maria(address, port)
    try:
        with conn.cursor() as cur:
            cur.execute("create table if not exists t (id int primary key, v varchar(64)) engine=InnoDB")
            cur.executemany("insert into t values (%s, md5(%s))", [(i, i) for i in range(first, first + count)])
    finally:
        conn.close()


def _maria_read(address: str, port: int) -> tuple[int, str]:
    conn = _maria(address, port)
    try:
        with conn.cursor() as cur:
            cur.execute("set session group_concat_max_len = 16777216")
            cur.execute("select count(*), md5(group_concat(concat(id, ':', v) order by id)) from t")
            found = cur.fetchone()
    finally:
        conn.close()
    assert found is not None
    return int(found[0]), str(found[1])


def _redis(address: str, port: int) -> redis.Redis:
    return redis.Redis(host=address, port=port, username=USER, password=PASSWORD, socket_timeout=5)


def _redis_write(address: str, port: int, first: int, count: int) -> None:
    client = _redis(address, port)
    try:
        client.mset({f"k:{i}": hashlib.md5(str(i).encode()).hexdigest() for i in range(first, first + count)})
        client.expire(f"k:{first}", 86400)  # a TTL comes back too
    finally:
        client.close()


def _redis_read(address: str, port: int) -> tuple[int, str]:
    client = _redis(address, port)
    try:
        keys = sorted(key.decode() for key in client.scan_iter("k:*", count=1000))
        values = client.mget(keys)
        ttls = sum(1 for key in keys if int(client.ttl(key)) > 0)
    finally:
        client.close()
    text = ",".join(f"{k}={v!r}" for k, v in zip(keys, values, strict=True)) + f";ttls={ttls}"
    return len(keys), hashlib.md5(text.encode()).hexdigest()


DATA = {
    "postgresql": Data(_pg_write, _pg_read, (DATABASE,)),
    "mariadb": Data(_maria_write, _maria_read, (DATABASE,)),
    "redis": Data(_redis_write, _redis_read, ()),
}


def _source(client: ReddwarfClient, target: Target, name: str) -> tuple[str, str, int]:
    data = DATA[target.engine]
    created = client.create_instance(
        name, "1", 1, datastore=target.engine, version=target.version, databases=list(data.databases),
        users=[UserRequest(name=USER, password=Secret(PASSWORD), databases=data.databases)],
    )
    view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
    assert view.address is not None and view.port is not None
    return view.id, view.address, view.port


def _restored(client: ReddwarfClient, name: str, backup_id: str) -> tuple[str, str, int]:
    created = client.create_instance(name, "1", 1, backup_id=backup_id)
    view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
    assert view.address is not None and view.port is not None
    return view.id, view.address, view.port


def _round_trip(reddwarf: ReddwarfProcesses, target: Target, incremental: bool) -> None:
    data = DATA[target.engine]
    tag = f"{target.engine}-{target.version}".replace(".", "-")
    with reddwarf.tenant() as client:
        source, address, port = _source(client, target, f"bk-{tag}")
        made = [source]
        try:
            data.write(address, port, 1, 200)
            points = [data.read(address, port)]
            full = client.backups.create_backup(f"bk-{tag}-full", source)
            backups = [client.backups.wait_for_backup(full.id, timeout=BACKUP_TIMEOUT)]
            if incremental:
                data.write(address, port, 201, 100)
                points.append(data.read(address, port))
                step = client.backups.create_backup(f"bk-{tag}-inc", source, incremental=True)
                backups.append(client.backups.wait_for_backup(step.id, timeout=BACKUP_TIMEOUT))
                assert backups[-1].parent_id == full.id
            data.write(address, port, 301, 50)  # after the last backup: must not come back
            for index, (backup, expected) in enumerate(zip(backups, points, strict=True)):
                copy, copy_address, copy_port = _restored(client, f"bk-{tag}-r{index}", backup.id)
                made.append(copy)
                assert data.read(copy_address, copy_port) == expected
        finally:
            for instance_id in made:
                client.delete_instance(instance_id)
            for instance_id in made:
                client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)
        # A backup outlives its instance; deleting the full one takes its incremental with it.
        client.backups.delete_backup(full.id)
        client.backups.wait_for_backup_delete(full.id, timeout=DELETE_TIMEOUT)


@pytest.mark.parametrize("strategy", [pytest.param(name, marks=pytest.mark.capability(f"backup:{name}"))
                                      for name in FULL])
def test_a_full_backup_restores_exactly(reddwarf: ReddwarfProcesses, target: Target, strategy: str) -> None:
    covering = [name for name, full in INCREMENTAL.items() if full == strategy and target.declares(f"backup:{name}")]
    if covering:
        not_applicable(f"{target.engine} {target.version}: its backup:{covering[0]} test restores a full backup too")
    _round_trip(reddwarf, target, incremental=False)


@pytest.mark.parametrize("strategy", [
    pytest.param(name, marks=pytest.mark.capability(f"backup:{name}", also=(f"backup:{full}",)))
    for name, full in INCREMENTAL.items()
])
def test_each_point_of_an_incremental_chain_restores_exactly(
    reddwarf: ReddwarfProcesses, target: Target, strategy: str
) -> None:
    _round_trip(reddwarf, target, incremental=True)

"""Replication conformance, for every engine version and each of its replication strategies: rows written on a
source before its replica exists and after are on the replica, read as the tenant's own user; a user created on
the source once the replica exists logs in on the replica; neither the tenant's user nor its root can write on
the replica; deleting the replica leaves the source a single instance that takes writes. A strategy test is
skipped (untested) for a version that does not declare it; each strategy's classification comes from these
results.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import psycopg
import pymysql
import pytest
import redis

from reddwarf.client import ReddwarfClient
from reddwarf.domain.secret import Secret
from tests.contract.targets import Target
from tests.contract.test_backups import DATA, DATABASE, _source
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses, wait_for


def _pg(address: str, port: int, user: str, password: str, sql: str) -> None:
    with psycopg.connect(host=address, port=port, user=user, password=password, dbname=DATABASE, connect_timeout=5,
                         autocommit=True) as conn:
        conn.execute(sql)


def _maria(address: str, port: int, user: str, password: str, sql: str) -> None:
    conn = pymysql.connect(host=address, port=port, user=user, password=password, database=DATABASE,
                           connect_timeout=5, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _redis(address: str, port: int, user: str, password: str, command: str) -> None:
    client = redis.Redis(host=address, port=port, username=user, password=password, socket_timeout=5)
    try:
        client.execute_command(*command.split(" "))
    finally:
        client.close()


# Per engine: run one statement as a user (in the tenant's database); a read and a write to run.
AS_USER: dict[str, Callable[[str, int, str, str, str], None]] = {"postgresql": _pg, "mariadb": _maria, "redis": _redis}
READ = {"postgresql": "SELECT count(*) FROM t", "mariadb": "SELECT count(*) FROM t", "redis": "DBSIZE"}
WRITE = {"postgresql": "CREATE TABLE by_root (i int)", "mariadb": "CREATE TABLE by_root (i int)",
         "redis": "SET by_root 1"}

STRATEGIES = ("streaming", "gtid", "replicaof")


@pytest.mark.parametrize("strategy", [pytest.param(name, marks=pytest.mark.capability(f"replication:{name}"))
                                      for name in STRATEGIES])
def test_a_replica_follows_its_source_and_takes_no_write(
    reddwarf: ReddwarfProcesses, target: Target, strategy: str
) -> None:
    data = DATA[target.engine]
    tag = f"{target.engine}-{target.version}".replace(".", "-")
    with reddwarf.tenant() as client:
        source, address, port = _source(client, target, f"rp-{tag}")
        made = [source]
        try:
            data.write(address, port, 1, 200)
            replica = client.create_replicas(f"rp-{tag}-r", source)
            made.append(replica.id)
            view = client.wait_for_instance(replica.id, timeout=ACTIVE_TIMEOUT)
            assert view.source_id == source and client.get_instance(source).replica_ids == [replica.id]
            assert view.address is not None and view.port is not None
            assert data.read(view.address, view.port) == data.read(address, port)
            data.write(address, port, 201, 100)
            expected = data.read(address, port)
            wait_for(lambda: data.read(str(view.address), int(str(view.port))) == expected, 30,
                     "the source's later rows on the replica")
            with pytest.raises(Exception, match=r"(?i)read.only"):
                data.write(view.address, view.port, 1000, 1)
            if target.engine in AS_USER:
                _later_accounts_reach_the_replica(client, target.engine, source, view.address, view.port)
            client.delete_instance(replica.id)
            client.wait_for_delete(replica.id, timeout=DELETE_TIMEOUT)
            made.remove(replica.id)
            assert client.get_instance(source).replica_ids == []
            data.write(address, port, 301, 10)
        finally:
            for instance_id in made:
                client.delete_instance(instance_id)
            for instance_id in made:
                client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)


def _later_accounts_reach_the_replica(
    client: ReddwarfClient, engine: str, source: str, address: str, port: int
) -> None:
    """A user made on the source now logs in on the replica (and reads); root, enabled on the source, logs in on
    the replica and is refused a write there."""
    run = AS_USER[engine]
    accounts = client.accounts
    password = "Pw-" + secrets.token_hex(8)
    accounts.create_user(source, "later", Secret(password), databases=[DATABASE] if engine != "redis" else [])
    root = accounts.enable_root(source)
    wait_for(lambda: _logs_in(engine, address, port, "later", password), 30,
             "the later user logging in on the replica")
    wait_for(lambda: _logs_in(engine, address, port, root.name, root.password.reveal()), 30,
             "root logging in on the replica")
    with pytest.raises(Exception, match=r"(?i)read.only"):
        run(address, port, root.name, root.password.reveal(), WRITE[engine])


def _logs_in(engine: str, address: str, port: int, user: str, password: str) -> bool:
    try:
        AS_USER[engine](address, port, user, password, READ[engine])
    except (psycopg.OperationalError, pymysql.err.OperationalError, redis.exceptions.AuthenticationError):
        return False
    return True

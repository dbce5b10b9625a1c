"""A branch of a MariaDB server under a steady write load, on the copy-on-write pool (the branch workflow's
steps: quiesce with the backup stages, snapshot, branch, start, adopt).

The load is bank transfers between InnoDB accounts, each with a ledger row, as the tenant over TCP. The
branch must pass CHECK TABLE, hold the balance invariant and every transfer committed before the snapshot
(none never committed), answer the tenant's password and only its own admin password, and stay apart from
its source, which it outlives.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from tests.support.backup_runtime import EngineInstances, Running
from tests.support.local_instances import Instances
from tests.support.server import wait_for

from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.mariadb import MariadbEngine

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("branches need loop volumes and OS users: the local runtime needs root", allow_module_level=True)

FLAVOR = Flavor(id="2", name="small", ram_mb=512, vcpus=1)
TENANT = UserSpec("teller", Secret("tenant-Pw-1234"), databases=("bank",))
ACCOUNTS, OPENING = 100, 1000


def _spec(users: tuple[UserSpec, ...] = (TENANT,)) -> InstanceSpec:
    return InstanceSpec(name="branch-source", flavor_id=FLAVOR.id, volume_size_gb=1, datastore="mariadb",
                        datastore_version="10.11", databases=(DatabaseSpec("bank"),) if users else (), users=users)


@pytest.fixture
def servers(scratch_root: Path, engine: MariadbEngine, mariadb1011: DatastoreVersion) -> Iterator[EngineInstances]:
    instances = Instances(scratch_root)
    made = EngineInstances(instances, engine, mariadb1011, FLAVOR, volume_gb=1, use_cow_pool="true", pool_gb=4)
    try:
        yield made
    finally:
        made.stop_all()
        instances.cleanup()


def _connect(running: Running) -> pymysql.Connection[Any]:
    return pymysql.connect(host=running.placement.address, port=running.placement.port, user=TENANT.name,
                           password=TENANT.password.reveal(), database="bank", autocommit=True, connect_timeout=5,
                           ssl_disabled=True)


def _rows(running: Running, sql: str) -> tuple[tuple[Any, ...], ...]:
    conn = _connect(running)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return tuple(cursor.fetchall())
    finally:
        conn.close()


class Transfers:
    """Moves money between random accounts, one transaction each with its ledger row, until stopped."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.committed: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pick = random.Random(7)
        conn = _connect(self.running)
        try:
            with conn.cursor() as cursor:
                while not self.stop.is_set():
                    source, target = pick.sample(range(1, ACCOUNTS + 1), 2)
                    amount = pick.randint(1, 50)
                    conn.begin()
                    cursor.execute("update account set balance = balance - %s where id = %s", (amount, source))
                    cursor.execute("update account set balance = balance + %s where id = %s", (amount, target))
                    cursor.execute("insert into ledger (amount) values (%s)", (amount,))
                    made = cursor.lastrowid
                    conn.commit()
                    self.committed.append(int(made))
        finally:
            conn.close()


def test_a_branch_under_writes_is_consistent_independent_and_its_own(servers: EngineInstances) -> None:
    source = servers.create(_spec())
    _rows(source, "create table account (id int primary key, balance bigint not null) engine=InnoDB")
    _rows(source, "create table ledger (id bigint auto_increment primary key, amount int not null) engine=InnoDB")
    _rows(source, f"insert into account select seq, {OPENING} from seq_1_to_{ACCOUNTS}")
    load = Transfers(source)
    try:
        wait_for(lambda: len(load.committed) >= 100, 60, "transfers to commit")
        before = set(load.committed)
        branch = servers.branch(source, _spec(users=()))
        wait_for(lambda: len(load.committed) >= len(before) + 50, 60, "transfers to go on on the source")
    finally:
        load.stop.set()
        load.thread.join(30)

    for table in ("account", "ledger"):
        assert _rows(branch, f"check table {table}")[-1][-1] == "OK"
    assert int(_rows(branch, "select sum(balance) from account")[0][0]) == ACCOUNTS * OPENING
    copied = {int(row[0]) for row in _rows(branch, "select id from ledger")}
    assert before <= copied <= set(load.committed)
    engine = servers.engine
    assert engine.probe(branch.placement, engine.admin_user, branch.admin)
    assert not engine.probe(branch.placement, engine.admin_user, source.admin)
    assert Path(branch.placement.data_dir).stat().st_uid != Path(source.placement.data_dir).stat().st_uid

    _rows(branch, "insert into ledger (amount) values (-1)")
    _rows(source, "insert into ledger (amount) values (-2)")
    assert _rows(source, "select count(*) from ledger where amount = -1") == ((0,),)
    assert _rows(branch, "select count(*) from ledger where amount = -2") == ((0,),)

    servers.runtime.stop(source.placement, source.workload)
    servers.started.remove((source.placement, source.workload))
    servers.runtime.destroy(source.placement)
    assert _rows(branch, "select count(*) from ledger") == ((len(copied) + 1,),)

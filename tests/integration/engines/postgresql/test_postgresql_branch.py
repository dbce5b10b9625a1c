"""A branch of a PostgreSQL server under a steady write load, on the copy-on-write pool (the branch workflow's
steps: quiesce, snapshot, branch with the engine's fix-ups, start, adopt), for 15 and 18.

The load is bank transfers between accounts, each with a ledger row, as the tenant's own user over TCP. The
branch must hold a consistent state (the balances still sum to the total; every transfer committed before
the snapshot is there, none that was never committed), answer the tenant's password and only the branch's
own admin password, run as its own OS user, never see the source's later writes nor show its own to the
source, and outlive the source.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.support.backup_runtime import EngineInstances, Running
from tests.support.local_instances import Instances
from tests.support.server import wait_for

from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.postgresql import PostgresqlEngine

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("branches need loop volumes and OS users: the local runtime needs root", allow_module_level=True)

FLAVOR = Flavor(id="2", name="small", ram_mb=512, vcpus=1)
TENANT = UserSpec("teller", Secret("tenant-Pw-1234"), databases=("bank",))
ACCOUNTS, OPENING = 100, 1000


def _spec(version: DatastoreVersion, users: tuple[UserSpec, ...] = (TENANT,)) -> InstanceSpec:
    return InstanceSpec(name="branch-source", flavor_id=FLAVOR.id, volume_size_gb=1, datastore="postgresql",
                        datastore_version=version.name, databases=(DatabaseSpec("bank"),) if users else (),
                        users=users)


@pytest.fixture(params=["15", "18"])
def version(request: pytest.FixtureRequest, engine: PostgresqlEngine) -> DatastoreVersion:
    return next(v for v in engine.versions() if v.name == request.param)


@pytest.fixture
def servers(scratch_root: Path, engine: PostgresqlEngine, version: DatastoreVersion) -> Iterator[EngineInstances]:
    instances = Instances(scratch_root)
    made = EngineInstances(instances, engine, version, FLAVOR, volume_gb=1, use_cow_pool="true", pool_gb=4)
    try:
        yield made
    finally:
        made.stop_all()
        instances.cleanup()


def _connect(running: Running, password: Secret = TENANT.password) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=running.placement.address, port=running.placement.port, user=TENANT.name,
                           password=password.reveal(), dbname="bank", autocommit=True, connect_timeout=5)


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
        with _connect(self.running) as conn:
            while not self.stop.is_set():
                source, target = pick.sample(range(1, ACCOUNTS + 1), 2)
                amount = pick.randint(1, 50)
                with conn.transaction():
                    conn.execute("update account set balance = balance - %s where id = %s", (amount, source))
                    conn.execute("update account set balance = balance + %s where id = %s", (amount, target))
                    row = conn.execute("insert into ledger (amount) values (%s) returning id", (amount,)).fetchone()
                assert row is not None
                self.committed.append(int(row[0]))


def test_a_branch_under_writes_is_consistent_independent_and_its_own(
    servers: EngineInstances, version: DatastoreVersion
) -> None:
    source = servers.create(_spec(version))
    with _connect(source) as conn:
        conn.execute("create table account (id int primary key, balance bigint not null)")
        conn.execute("create table ledger (id bigserial primary key, amount int not null)")
        conn.execute("insert into account select g, %s from generate_series(1, %s) g", (OPENING, ACCOUNTS))
    load = Transfers(source)
    try:
        wait_for(lambda: len(load.committed) >= 100, 60, "transfers to commit")
        before = set(load.committed)
        branch = servers.branch(source, _spec(version, users=()))
        wait_for(lambda: len(load.committed) >= len(before) + 50, 60, "transfers to go on on the source")
    finally:
        load.stop.set()
        load.thread.join(30)

    with _connect(branch) as conn:  # the tenant's own password opens the branch
        total = conn.execute("select sum(balance) from account").fetchone()
        copied = {int(row[0]) for row in conn.execute("select id from ledger").fetchall()}
        assert total is not None and int(str(total[0])) == ACCOUNTS * OPENING
        conn.execute("insert into ledger (amount) values (-1)")
    assert before <= copied <= set(load.committed)
    engine = servers.engine
    assert engine.probe(branch.placement, engine.admin_user, branch.admin)
    assert not engine.probe(branch.placement, engine.admin_user, source.admin)
    assert Path(branch.placement.data_dir).stat().st_uid != Path(source.placement.data_dir).stat().st_uid

    with _connect(source) as conn:
        assert conn.execute("select count(*) from ledger where amount = -1").fetchone() == (0,)
        conn.execute("insert into ledger (amount) values (-2)")
    with _connect(branch) as conn:
        assert conn.execute("select count(*) from ledger where amount = -2").fetchone() == (0,)

    servers.runtime.stop(source.placement, source.workload)
    servers.started.remove((source.placement, source.workload))
    servers.runtime.destroy(source.placement)
    with _connect(branch) as conn:
        assert conn.execute("select count(*) from ledger").fetchone() == (len(copied) + 1,)

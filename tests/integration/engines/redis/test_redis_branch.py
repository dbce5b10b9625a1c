"""A branch of a Redis server under a steady write load, on the copy-on-write pool (the branch workflow's
steps: snapshot, branch, start, adopt). Every Reddwarf Redis writes an append-only file, which the branch
loads at start.

The load is transactions (MULTI/EXEC) of an INCR and an RPUSH of its result, as the tenant. The branch must
hold a consistent prefix of the writes (the list is exactly 1..n and the counter is n; at most the last
second's writes, not yet synced, are missing), the tenant's ACL user with its password and only its own
admin password, and stay apart from its source, which it outlives.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from tests.support.backup_runtime import EngineInstances, Running
from tests.support.local_instances import Instances
from tests.support.server import wait_for

from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.redis import RedisEngine

pytestmark = [pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("branches need loop volumes and OS users: the local runtime needs root", allow_module_level=True)

FLAVOR = Flavor(id="1", name="tiny", ram_mb=256, vcpus=1)
TENANT = UserSpec("app", Secret("tenant-Pw-1234"))


def _spec(users: tuple[UserSpec, ...] = (TENANT,)) -> InstanceSpec:
    return InstanceSpec(name="branch-source", flavor_id=FLAVOR.id, volume_size_gb=1, datastore="redis",
                        datastore_version="7.0", users=users)


@pytest.fixture
def servers(scratch_root: Path, engine: RedisEngine, redis70: DatastoreVersion) -> Iterator[EngineInstances]:
    instances = Instances(scratch_root)
    made = EngineInstances(instances, engine, redis70, FLAVOR, volume_gb=1, use_cow_pool="true", pool_gb=4)
    try:
        yield made
    finally:
        made.stop_all()
        instances.cleanup()


def _tenant(running: Running) -> redis.Redis:
    return redis.Redis(host=running.placement.address, port=running.placement.port, username=TENANT.name,
                       password=TENANT.password.reveal(), socket_timeout=5)


class Writes:
    """INCR and RPUSH of the result in one MULTI/EXEC each, until stopped; `done` is the last acknowledged."""

    def __init__(self, running: Running) -> None:
        self.client = _tenant(running)
        self.done = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            pipe = self.client.pipeline(transaction=True)
            pipe.incr("n")
            pipe.rpush("seen", self.done + 1)
            counter, _ = pipe.execute()
            self.done = int(counter)


def test_a_branch_under_writes_holds_a_consistent_prefix_and_is_its_own(servers: EngineInstances) -> None:
    source = servers.create(_spec())
    load = Writes(source)
    try:
        wait_for(lambda: load.done >= 200, 60, "writes to be acknowledged")
        branch = servers.branch(source, _spec(users=()))
        copied_at_least = 0  # the last second's writes may be missing (appendfsync everysec)
        wait_for(lambda: load.done >= 400, 60, "writes to go on on the source")
    finally:
        load.stop.set()
        load.thread.join(30)
        load.client.close()

    client = _tenant(branch)
    try:
        count = int(client.get("n") or 0)
        assert count > copied_at_least
        assert [int(v) for v in client.lrange("seen", 0, -1)] == list(range(1, count + 1))
        assert count <= load.done
        client.set("branch-only", "1")
    finally:
        client.close()
    engine = servers.engine
    assert engine.probe(branch.placement, engine.admin_user, branch.admin)
    assert not engine.probe(branch.placement, engine.admin_user, source.admin)
    assert Path(branch.placement.data_dir).stat().st_uid != Path(source.placement.data_dir).stat().st_uid

    source_client = _tenant(source)
    try:
        assert source_client.get("branch-only") is None
        source_client.set("source-only", "1")
    finally:
        source_client.close()

    servers.runtime.stop(source.placement, source.workload)
    servers.started.remove((source.placement, source.workload))
    servers.runtime.destroy(source.placement)
    client = _tenant(branch)
    try:
        assert client.get("source-only") is None
        assert int(client.get("n") or 0) == count
    finally:
        client.close()

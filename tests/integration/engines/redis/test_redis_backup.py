"""Redis 7.0 backups and restores with real servers on the local runtime (`tests.support.backup_runtime`).

The snapshot's raw stream (a tar of the RDB and the ACL file) goes into a file and is fed back to a new
instance's restore. Keys, values and absolute expiry times must come back exactly, and so must the ACL users
(the tenant logs in with its password); the restored server loads the snapshot with its normal configuration
(AOF on) and keeps it across a restart; only the new admin password opens it; no admin password ever appears
on a command line.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.support.backup_runtime import ArgvWatch, EngineInstances, Running
from tests.support.local_instances import Instances
from tests.support.server import wait_for

from reddwarf.domain.backup import ParentBackup
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.redis import RedisEngine, admin
from reddwarf.engines.redis.backup import FULL_STRATEGY, NO_INCREMENTALS

pytestmark = [pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("backups run their tools as the instance's OS user: the local runtime needs root",
                allow_module_level=True)

FLAVOR = Flavor(id="1", name="tiny", ram_mb=256, vcpus=1)
TENANT = UserSpec("app", Secret("tenant-Pw-1234"))
LATER = UserSpec("made_later", Secret("later-Pw-5678"))
SPEC = InstanceSpec(name="backup-source", flavor_id=FLAVOR.id, volume_size_gb=1, datastore="redis",
                    datastore_version="7.0", users=(TENANT,))


@pytest.fixture
def instances(scratch_root: Path) -> Iterator[Instances]:
    made = Instances(scratch_root)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def servers(instances: Instances, engine: RedisEngine, redis70: DatastoreVersion) -> Iterator[EngineInstances]:
    made = EngineInstances(instances, engine, redis70, FLAVOR, volume_gb=1)
    try:
        yield made
    finally:
        made.stop_all()


def as_admin(running: Running, *args: str, password: Secret | None = None) -> Any:
    where = admin.target(running.placement, "reddwarf_admin", password or running.admin, timeout=10.0)
    with admin.session(where) as client:
        return client.execute_command(*args)


def tenant(running: Running, user: UserSpec = TENANT) -> redis.Redis:
    return redis.Redis(host=running.placement.address, port=running.placement.port, username=user.name,
                       password=user.password.reveal(), socket_timeout=5)


def write_keys(running: Running) -> None:
    client = tenant(running)
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(2000):
            pipe.set(f"s:{i}", os.urandom(i % 200))
        for i in range(50):
            pipe.hset(f"h:{i}", mapping={f"f{j}": j * i for j in range(20)})
            pipe.rpush(f"l:{i}", *[f"v{j}" for j in range(30)])
            pipe.sadd(f"set:{i}", *range(i + 1))
            pipe.zadd(f"z:{i}", {f"m{j}": j / 3 for j in range(25)})
            pipe.set(f"ttl:{i}", "expiring", px=3_600_000 + i * 1000)
        pipe.execute()
    finally:
        client.close()


def dataset(running: Running) -> dict[bytes, tuple[bytes, int]]:
    """Every key's DUMP (its serialised value) and absolute expiry (PEXPIRETIME; -1 without one)."""
    where = admin.target(running.placement, "reddwarf_admin", running.admin, timeout=10.0)
    found: dict[bytes, tuple[bytes, int]] = {}
    with admin.session(where) as client:
        for key in client.scan_iter(count=1000):
            found[key] = (client.dump(key), int(client.execute_command("PEXPIRETIME", key)))
    return found


def acl_users(running: Running) -> list[bytes]:
    return sorted(line for line in as_admin(running, "ACL", "LIST") if not line.startswith(b"user reddwarf_admin "))


def test_snapshot_and_users_restore_exactly_into_a_server_that_is_the_new_instances_own(
    servers: EngineInstances, engine: RedisEngine, scratch_root: Path
) -> None:
    source = servers.create(SPEC)
    engine.accounts(source.placement, source.admin).create_users([LATER])  # lives in the ACL file only
    write_keys(source)
    as_admin(source, "SET", "written:last", "just before the backup")  # a stale snapshot would miss it
    before = dataset(source)
    users = acl_users(source)
    assert len(before) == 2251 and sum(1 for _, expiry in before.values() if expiry > 0) == 50

    with ArgvWatch([source.admin.reveal()]).running() as watch:
        taken = servers.take_backup(source, scratch_root / "snapshot.tar")
    assert taken.strategy == FULL_STRATEGY
    assert taken.result.metadata["version"] == "7.0"
    as_admin(source, "SET", "written:after", "not in the backup")

    new_admin = Secret(secrets.token_urlsafe(24))
    with ArgvWatch([source.admin.reveal(), new_admin.reveal()]).running() as restore_watch:
        restored = servers.restore(SPEC, [taken], source.admin, new_admin)
    assert dataset(restored) == before
    assert acl_users(restored) == users
    for user in (TENANT, LATER):
        client = tenant(restored, user)
        assert client.get("written:last") == b"just before the backup"
        client.close()

    # Loaded with its normal configuration: the append-only file is on and holds the data at once.
    persistence = as_admin(restored, "INFO", "persistence")
    assert persistence["aof_enabled"] == 1 and persistence["loading"] == 0
    manifest = Path(restored.placement.data_dir, "appendonlydir", "appendonly.aof.manifest").read_text()
    assert "appendonly.aof.1.base.rdb seq 1 type b" in manifest
    servers.runtime.stop(restored.placement, restored.workload)
    servers.runtime.start(restored.placement, restored.workload)
    wait_for(lambda: engine.probe(restored.placement, "reddwarf_admin", restored.admin), 60.0, "the restart")
    assert dataset(restored) == before

    # Only the new admin password opens it, and adopting again changes nothing.
    assert not engine.probe(restored.placement, "reddwarf_admin", source.admin)
    rules = as_admin(restored, "ACL", "GETUSER", "reddwarf_admin")
    engine.backups(servers.version).adopt(restored.placement, source.admin, restored.admin)
    assert as_admin(restored, "ACL", "GETUSER", "reddwarf_admin") == rules
    assert engine.probe(restored.placement, "reddwarf_admin", restored.admin)
    # A verification's checks (`Backups.check`): loaded, and every key counted.
    checked = engine.backups(servers.version).check(restored.placement, restored.admin, 10.0)
    assert checked.endswith(f"DBSIZE {len(before)}"), checked

    assert not watch.leaks and not restore_watch.leaks
    # The watch ran while the backup did: it saw at least one of the (short-lived) tool's programs, or the
    # server's BGSAVE child the tool waits on; and one of the restore's.
    assert watch.seen & {"sh", "ln", "cp", "tar"} or any(name.startswith("redis-rdb-bgsave") for name in watch.seen)
    assert restore_watch.seen & {"sh", "tar", "mv", "rm", "mkdir"}


def test_incrementals_are_refused_with_a_reason(servers: EngineInstances, engine: RedisEngine) -> None:
    backups = engine.backups(servers.version)
    assert backups.strategies().incremental is None
    assert backups.strategies().reason == NO_INCREMENTALS
    source = servers.create(SPEC)
    assert backups.incremental_blocker(source.placement, source.admin) == NO_INCREMENTALS
    with pytest.raises(PermanentError, match="no incremental"):
        backups.backup(source.placement, source.admin, parent=ParentBackup("b-1", {}, {}))
    # The memory left for a snapshot's fork: maxmemory is half the flavor, and a fork child dies first.
    assert as_admin(source, "CONFIG", "GET", "maxmemory")[1] == str(FLAVOR.ram_mb * 1024 * 1024 // 2).encode()
    assert as_admin(source, "CONFIG", "GET", "oom-score-adj")[1] == b"yes"  # "relative", as Redis shows it

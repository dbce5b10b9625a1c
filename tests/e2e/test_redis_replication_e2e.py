"""Redis replication end to end (docs/replication.md "Redis"): a real `reddwarf server`, a Redis source and its
replicas, which follow it over its TLS replication port with certificates of their set's own CA.

- A switchover under a writer that counts every key the server acknowledged loses none of them; the old primary
  and the other replica follow the new primary and refuse writes; a detached replica takes writes on its own,
  with its own admin password and without its former set's replication user.
- A replica whose primary died hands nothing to a squatter on the primary's replication port that speaks TLS
  with a certificate naming that address from a CA of its own: the handshake fails before `masterauth` is
  sent. The dead primary is ejected, and once its port is free it rejoins as a replica of the new primary.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from reddwarf.client import Instance, ReddwarfClient, UserRequest
from reddwarf.domain.certificates import self_signed
from reddwarf.domain.secret import Secret
from tests.e2e.test_cli_e2e import cli
from tests.e2e.test_replication_e2e import _events, _replication, _set_admin, squatter_user
from tests.e2e.test_switchover_e2e import _eject_accepted, _streaming
from tests.support.engine_harness import OsUser
from tests.support.server import (
    ACTIVE_TIMEOUT,
    DELETE_TIMEOUT,
    ReddwarfProcesses,
    processes_of,
    running_plane,
    signal_processes,
    wait_for,
)
from tests.support.squatter import start_squatter
from tests.support.writer import Writer

__all__ = ["squatter_user"]

USER, PASSWORD = "app", "replicate me 'please'"
SWITCH_TIMEOUT = 120.0
EJECT_AFTER = 2.0
TLS_PORT_OFFSET = 1000


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("redis-replication", "127.0.182.0/24", REDDWARF_REPLICATION_CHECK_INTERVAL="0.5",
                       REDDWARF_EJECT_AFTER=str(EJECT_AFTER)) as procs:
        yield procs


def _client(instance: Instance, user: str = USER, password: str = PASSWORD,
            direct: ReddwarfProcesses | None = None) -> redis.Redis:
    """A client of `instance` at its address, or (`direct`: its plane) at its own unix socket: once its set has
    switched over, the founder's address is the set's writer endpoint and reaches the primary."""
    if direct is not None:
        return redis.Redis(unix_socket_path=str(direct.socket_dir(instance.id) / "redis.sock"), username=user,
                           password=password, socket_timeout=5, socket_connect_timeout=5)
    return redis.Redis(host=str(instance.address), port=int(str(instance.port)), username=user, password=password,
                       socket_timeout=5, socket_connect_timeout=5)


def _run(instance: Instance, *command: str, user: str = USER, password: str = PASSWORD,
         direct: ReddwarfProcesses | None = None) -> object:
    client = _client(instance, user, password, direct)
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def _eventually(instance: Instance, key: str, expected: bytes, direct: ReddwarfProcesses | None = None) -> None:
    def arrived() -> bool:
        try:
            return _run(instance, "GET", key, direct=direct) == expected
        except redis.RedisError:
            return False

    wait_for(arrived, 60, f"{key} to be {expected!r} on {instance.id}")


def _source(client: ReddwarfClient, name: str) -> Instance:
    created = client.create_instance(name, "1", 1, datastore="redis",
                                     users=[UserRequest(name=USER, password=Secret(PASSWORD))])
    return client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)


def _writer(members: list[Instance]) -> Writer[redis.Redis]:
    def connect(member: Instance) -> redis.Redis:
        return redis.Redis(host=str(member.address), port=int(str(member.port)), username=USER, password=PASSWORD,
                           socket_timeout=2, socket_connect_timeout=2)

    return Writer(members, connect, lambda conn, n: conn.set(f"w:{n}", "1"), lambda conn: conn.close(),
                  (redis.RedisError,))


def _missing(instance: Instance, numbers: list[int], direct: ReddwarfProcesses | None = None) -> int:
    missing = 0
    for start in range(0, len(numbers), 1000):
        chunk = numbers[start:start + 1000]
        values = _client(instance, direct=direct).mget([f"w:{n}" for n in chunk])
        missing += sum(1 for value in values if value is None)
    return missing


def test_a_redis_switchover_loses_no_acknowledged_write_and_a_detached_replica_stands_alone(
    reddwarf: ReddwarfProcesses, unique_name: str
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        client.create_replicas(unique_name, source.id, 2)
        replica_ids = client.get_instance(source.id).replica_ids
        replicas = [client.wait_for_instance(i, timeout=ACTIVE_TIMEOUT) for i in replica_ids]
        candidate, other = replicas
        for replica in replicas:
            wait_for(lambda r=replica: _streaming(client, r.id), 30, f"replica {replica.id} to stream")

        with _writer([source, candidate]) as writer:
            writer.wait_for_more(200)
            client.promote_replica(candidate.id)
            asked = len(writer.acknowledged)
            promoted = client.wait_for_detach(candidate.id, timeout=SWITCH_TIMEOUT)
            writer.wait_for_more(200)
        acknowledged = writer.acknowledged
        # The writer met the switch: writing when it was asked for and after it. (It may never have been refused:
        # redis-py retries a broken connection by itself, and the source's address is the set's writer endpoint,
        # which leads to the new primary once it takes writes.)
        assert 0 < asked < len(acknowledged)
        assert promoted.source_id is None and sorted(promoted.replica_ids) == sorted([source.id, other.id])
        assert _missing(promoted, acknowledged) == 0

        # The old primary and the other replica follow the new primary and refuse writes.
        _run(promoted, "SET", "after", "switch")
        assert _run(source, "GET", "after") == b"switch"  # its address is the set's writer endpoint now
        for follower_id in (source.id, other.id):  # each asked over its own unix socket
            follower = client.wait_for_instance(follower_id, timeout=ACTIVE_TIMEOUT)
            assert follower.source_id == candidate.id
            _eventually(follower, "after", b"switch", direct=reddwarf)
            assert _missing(follower, acknowledged, direct=reddwarf) == 0
            with pytest.raises(redis.exceptions.ReadOnlyError):
                _run(follower, "SET", "mine", "1", direct=reddwarf)
            wait_for(lambda f=follower_id: _streaming(client, f), 30, f"{follower_id} to stream from the new primary")

        # Detach the other replica: it takes writes on its own, with an admin password of its own.
        set_admin = _set_admin(reddwarf, candidate.id)
        assert _run(other, "PING", user="reddwarf_admin", password=set_admin) is True
        detached = cli(reddwarf, "instance", "detach", other.id, "--wait")
        assert detached["status"] == "ACTIVE" and "replica_of" not in detached
        alone = client.get_instance(other.id)
        _run(alone, "SET", "only", "here")
        _run(promoted, "SET", "only", "there")
        _eventually(source, "only", b"there", direct=reddwarf)
        assert _run(alone, "GET", "only") == b"here"
        with pytest.raises(redis.exceptions.AuthenticationError):
            _run(alone, "PING", user="reddwarf_admin", password=set_admin)
        own = _set_admin(reddwarf, other.id)
        users = [u.decode() for u in _client(alone, "reddwarf_admin", own).execute_command("ACL", "USERS")]
        assert "reddwarf_replication" not in users and USER in users
        for instance_id in (other.id, source.id, candidate.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)


def test_no_credential_reaches_a_squatter_on_a_dead_redis_primary_which_is_ejected_and_rejoins(
    reddwarf: ReddwarfProcesses, unique_name: str, squatter_user: OsUser
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        # A tenant's eject: this set does not fail over by itself (tests/e2e/test_failover_e2e.py does).
        replica = client.wait_for_instance(
            client.create_replicas(f"{unique_name}-r", source.id, auto_failover=False).id, timeout=ACTIVE_TIMEOUT)
        _run(source, "SET", "before", "failure")
        _eventually(replica, "before", b"failure")

        # Whoever takes the dead primary's replication port serves TLS with a certificate naming that very
        # address, from a CA of its own: the replica must not trust it (Redis checks the chain, not the address).
        issued = self_signed("squatter", (str(source.address),))
        tls = Path(tempfile.mkdtemp(prefix="squatter-tls-"))  # a 0700 directory of the squatter's own
        os.chown(tls, squatter_user.uid, squatter_user.gid)
        for name, content in (("cert.pem", issued.certificate), ("key.pem", issued.key.reveal())):
            (tls / name).write_text(content)
            os.chown(tls / name, squatter_user.uid, squatter_user.gid)
        tls_port = int(str(source.port)) + TLS_PORT_OFFSET
        squatter = start_squatter(squatter_user, "redis-tls", tcp=(str(source.address), tls_port), bind_for=120,
                                  tls=((str(tls / "cert.pem"), str(tls / "key.pem")),))
        try:
            signal_processes(processes_of(reddwarf.os_user(source.id)), signal.SIGKILL)
            squatter.wait_listening(30)
            squatter.wait_connections(2, timeout=60)  # the replica came back to its primary's port, twice
            wait_for(lambda: client.get_instance(replica.id).operating_status == "ERROR", 30,
                     "the replica to be Degraded for not streaming")
            health = _replication(client, replica.id)
            assert health["state"] == "stopped" and "source" in health["reason"], health
            wait_for(lambda: _eject_accepted(client, source.id), 60, f"the source to be down {EJECT_AFTER:g} s")
            promoted = client.wait_for_detach(replica.id, timeout=SWITCH_TIMEOUT)
            assert any("fenced" in str(e.get("message")) for e in _events(reddwarf, source.id))
        finally:
            squatter.stop()
            shutil.rmtree(tls, ignore_errors=True)
        # No TLS session was ever completed with the squatter: no user name, no password went to it.
        assert squatter.tls_handshakes == 0
        assert b"reddwarf_replication" not in squatter.received
        assert _run(promoted, "GET", "before") == b"failure"
        _run(promoted, "SET", "after", "failover")
        # Its port free again, the old primary rejoins as a replica of the new primary, read-only.
        rejoined = client.wait_for_instance(source.id, timeout=SWITCH_TIMEOUT)
        assert rejoined.source_id == promoted.id and _replication(client, source.id)["role"] == "replica"
        _eventually(rejoined, "after", b"failover", direct=reddwarf)
        wait_for(lambda: _streaming(client, source.id), 30, "the rejoined member to stream")
        with pytest.raises(redis.exceptions.ReadOnlyError):
            _run(rejoined, "SET", "mine", "1", direct=reddwarf)
        for instance_id in (source.id, promoted.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)

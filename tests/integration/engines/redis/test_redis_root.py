"""A tenant's `root` on Redis 7.0 is the managed-service root: the commands of docs/root-privileges.md
work, and every escape to the host, move of the server or reach for Reddwarf's admin is tried and refused.

Also the server's address, port and unix socket pinned on its command line, above its configuration file.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from redis_harness import OsUser, Server, client, listening_sockets, running_server

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.instance import InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import FileSpec
from reddwarf.engines.redis import RedisEngine, RedisSettings
from reddwarf.engines.redis.config import CONF_FILE

pytestmark = [pytest.mark.slow]

SPEC = InstanceSpec(name="root", flavor_id="1", volume_size_gb=1, datastore="redis", datastore_version="7.0")
ROOT_PASSWORD = Secret("r00t-" + secrets.token_urlsafe(12))


@pytest.fixture
def server(engine: RedisEngine, redis70: DatastoreVersion, os_user: OsUser, scratch_root: Path) -> Iterator[Server]:
    with running_server(engine, redis70, os_user, scratch_root, SPEC) as running:
        running.engine.accounts(running.placement, running.admin_password).enable_root(ROOT_PASSWORD)
        yield running


@pytest.fixture
def root(server: Server) -> Iterator[redis.Redis]:
    found = client(server.placement, "root", ROOT_PASSWORD.reveal())
    yield found
    found.close()


def refused(conn: redis.Redis, *command: str) -> bool:
    """True when the ACL refuses `command` (NOPERM), or Redis 7 refuses a protected command to everyone
    (MODULE and DEBUG are off on the command line); any other answer or error is not a refusal."""
    try:
        conn.execute_command(*command)
    except redis.exceptions.NoPermissionError:
        return True
    except redis.RedisError as exc:
        return command[0] in ("MODULE", "DEBUG") and "command not allowed" in str(exc)
    return False


def test_root_runs_every_data_command_and_reads_the_server_state(root: redis.Redis) -> None:
    assert root.set("k", "v") and root.get("k") == b"v"
    assert root.keys("*") == [b"k"]
    assert root.execute_command("SWAPDB", 0, 1) and root.execute_command("SWAPDB", 0, 1)
    assert root.sort("list-that-is-not-there") == []
    assert "redis_version" in root.info()
    assert root.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert root.execute_command("SLOWLOG", "LEN") >= 0
    assert root.client_list()
    assert root.execute_command("ROLE")[0] == b"master"
    assert root.lastsave()
    assert root.flushdb() and root.flushall()


def test_root_cannot_reach_the_host_or_reddwarfs_admin(server: Server, root: redis.Redis, scratch_root: Path) -> None:
    admin = server.engine.admin_user
    for command in (
        ("ACL", "SETUSER", admin, "off"),
        ("ACL", "SETUSER", admin, "resetpass", ">x"),
        ("ACL", "DELUSER", admin),
        ("ACL", "SETUSER", "root", "+@all"),
        ("ACL", "SETUSER", "helper", "on", ">x", "+@all"),
        ("ACL", "SAVE"),
        ("ACL", "LOAD"),
        ("ACL", "LIST"),
        ("ACL", "GETUSER", admin),
        ("CONFIG", "SET", "dir", str(scratch_root)),
        ("CONFIG", "SET", "dbfilename", "elsewhere.rdb"),
        ("CONFIG", "SET", "appendonly", "no"),
        ("CONFIG", "SET", "logfile", "/tmp/redis.log"),
        ("CONFIG", "SET", "aclfile", "/tmp/users.acl"),
        ("CONFIG", "SET", "maxmemory", "0"),
        ("CONFIG", "REWRITE"),
        ("MODULE", "LOAD", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        ("DEBUG", "SLEEP", "0"),
        ("DEBUG", "SET-ACTIVE-EXPIRE", "0"),
        ("REPLICAOF", "127.0.0.1", "6390"),
        ("SLAVEOF", "127.0.0.1", "6390"),
        ("FAILOVER",),
        ("MIGRATE", "127.0.0.1", "6390", "k", "0", "1000"),
        ("SYNC",),
        ("PSYNC", "?", "-1"),
        ("MONITOR",),
        ("CLIENT", "KILL", "USER", admin),
        ("CLIENT", "PAUSE", "10000"),
        ("RESTORE", "k2", "0", "\x00"),
        ("SAVE",),
        ("CLUSTER", "MEET", "127.0.0.1", "6390"),
        ("SHUTDOWN", "NOSAVE"),
    ):
        assert refused(root, *command), command
    with server.admin() as conn:  # the admin is untouched, and so is the server
        assert conn.ping() is True
        assert conn.config_get("dir")["dir"] == server.placement.data_dir
        assert conn.acl_getuser(admin)["flags"][0] == "on"


def test_no_tenant_can_move_the_server(server: Server, root: redis.Redis) -> None:
    user = UserSpec("bob", Secret("bob-" + secrets.token_urlsafe(8)))
    server.engine.accounts(server.placement, server.admin_password).create_users([user])
    with client(server.placement, user.name, user.password.reveal()) as bob:
        for conn in (root, bob):
            for name, value in (("bind", "0.0.0.0"), ("port", "6390"), ("unixsocket", "/tmp/r.sock"),
                                ("tls-port", "6391"), ("replicaof", "127.0.0.1 6379"), ("masterauth", "x"),
                                ("tls-auth-clients", "no"), ("tls-ca-cert-file", "/etc/ssl/certs/ca-certificates.crt")):
                assert refused(conn, "CONFIG", "SET", name, value), name
            assert refused(conn, "REPLICAOF", "127.0.0.1", "6379")
    # The tenant port and the replication port (TLS, a certificate of the set's CA asked of every client).
    assert listening_sockets(server.process.pid if server.process else 0) == {
        (server.placement.address, server.placement.port), (server.placement.address, server.placement.port + 1000)
    }


def test_the_command_line_pins_address_port_and_socket(server: Server) -> None:
    # A configuration file that says otherwise (rewritten by anything) does not move the server.
    path = str(Path(server.placement.config_dir) / CONF_FILE)
    text = next(f.content for f in server.workload.files if f.path == path)
    moved = (
        text.replace(f"port {server.placement.port}", "port 6390")
        .replace(f'bind "{server.placement.address}"', 'bind "127.0.0.1"')
        .replace("unixsocketperm 700", "unixsocketperm 777")
    )
    assert moved != text
    server.stop()
    server.workload = replace(server.workload, files=(FileSpec(path, moved, mode=0o600),))
    server.start()
    server.wait_ready()
    assert server.process is not None
    assert listening_sockets(server.process.pid) == {(server.placement.address, server.placement.port),
                                                     (server.placement.address, server.placement.port + 1000)}
    assert server.socket_path.stat().st_mode & 0o777 == 0o700


def test_root_superuser_setting_gives_every_command(server: Server, root: redis.Redis) -> None:
    assert refused(root, "CONFIG", "SET", "maxmemory-policy", "noeviction")  # off by default
    vm_like = RedisEngine(RedisSettings(root_superuser=True))
    vm_like.accounts(server.placement, server.admin_password).enable_root(ROOT_PASSWORD)
    assert root.execute_command("ACL", "WHOAMI") == b"root"
    assert root.config_set("maxmemory-policy", "noeviction")

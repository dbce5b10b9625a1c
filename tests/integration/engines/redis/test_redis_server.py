"""The Redis engine against real redis-server 7.0 processes run as an unprivileged user.

Each test gets its own server (start to ready takes milliseconds) on an address of 127.0.80.0/24, port
6379, and checks what a tenant or an operator would see: who may log in, what a tenant may run, what
survives a restart or a crash, what is on disk, where the server listens.
"""

from __future__ import annotations

import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_harness import OsUser, Server, build_server, client, listening_sockets, running_server, wait_for

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import BadRequest, PermanentError, TemporaryError
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.redis import RedisEngine
from reddwarf.engines.redis.config import ACL_FILE, CONF_FILE, password_hash

TENANT = "alice"
TENANT_PASSWORD = "t3nant-pa55-n0t-on-d1sk"
SPEC = InstanceSpec(
    name="cache",
    flavor_id="1",
    volume_size_gb=1,
    datastore="redis",
    datastore_version="7.0",
    users=(UserSpec(TENANT, Secret(TENANT_PASSWORD)),),
)


@pytest.fixture
def server(engine: RedisEngine, redis70: DatastoreVersion, os_user: OsUser, scratch_root: Path) -> Iterator[Server]:
    with running_server(engine, redis70, os_user, scratch_root, SPEC) as running:
        engine.bootstrap(SPEC, running.placement, running.admin_password)
        yield running


def tenant(server: Server, password: str = TENANT_PASSWORD) -> redis.Redis:
    return client(server.placement, TENANT, password)


def aclfile(server: Server) -> Path:
    return Path(server.placement.config_dir) / ACL_FILE


def test_discovers_debian_redis_7_0(redis70: DatastoreVersion) -> None:
    assert redis70.datastore == "redis"
    assert redis70.number.startswith("7.0.")
    assert Path(redis70.bin_dir, "redis-server").is_file()


def test_default_user_is_off(server: Server) -> None:
    anonymous = client(server.placement, None, None)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    for password in ("", "nopass", server.admin_password.reveal(), TENANT_PASSWORD):
        as_default = client(server.placement, "default", password or "x")
        with pytest.raises(redis.AuthenticationError):
            as_default.ping()
        as_default.close()
    assert not server.engine.probe(server.placement, "default", Secret("x"))


def test_admin_logs_in_and_administers(server: Server) -> None:
    assert server.engine.probe(server.placement, server.engine.admin_user, server.admin_password)
    assert not server.engine.probe(server.placement, server.engine.admin_user, Secret("wrong"))
    admin = server.admin()
    assert admin.config_get("appendonly") == {"appendonly": "yes"}
    users = {line.split()[1] for line in admin.acl_list()}
    assert users == {"default", "reddwarf_admin", TENANT}
    admin.close()


def test_tenant_reads_and_writes_but_cannot_administer(server: Server) -> None:
    assert server.engine.probe(server.placement, TENANT, Secret(TENANT_PASSWORD))
    assert not server.engine.probe(server.placement, TENANT, Secret("wrong"))
    conn = tenant(server)
    assert conn.set("greeting", "hello") is True
    assert conn.get("greeting") == b"hello"
    assert conn.publish("news", "x") == 0
    for command in (("CONFIG", "GET", "maxmemory"), ("DEBUG", "SLEEP", "0"), ("SHUTDOWN",), ("ACL", "LIST"),
                    ("MODULE", "LIST"), ("REPLICAOF", "127.0.0.1", "1")):
        with pytest.raises(redis.ResponseError):
            conn.execute_command(*command)
    conn.close()
    assert server.running
    assert server.engine.probe(server.placement, TENANT, Secret(TENANT_PASSWORD))


def test_users_and_data_survive_a_restart(server: Server) -> None:
    conn = tenant(server)
    conn.set("kept", "across-restarts")
    conn.close()
    assert server.stop() == 0  # SIGTERM: Redis saves and exits cleanly
    assert server.engine.probe(server.placement, TENANT, Secret(TENANT_PASSWORD)) is False
    server.start()
    server.wait_ready()
    assert server.engine.probe(server.placement, TENANT, Secret(TENANT_PASSWORD))
    conn = tenant(server)
    assert conn.get("kept") == b"across-restarts"
    conn.close()


def test_data_survives_a_crash_through_the_append_only_file(server: Server) -> None:
    conn = tenant(server)
    for i in range(100):
        conn.set(f"key:{i}", i)
    conn.close()
    # No RDB save rule fires for 100 writes within a minute: only the AOF can bring these keys back.
    server.restart(signal.SIGKILL)
    conn = tenant(server)
    assert conn.dbsize() == 100
    assert conn.get("key:99") == b"99"
    conn.close()
    assert (Path(server.placement.data_dir) / "appendonlydir").is_dir()


def test_transactions_and_scripts_survive_a_crash_through_the_append_only_file(server: Server) -> None:
    """The AOF holds a MULTI/EXEC (and a script's writes, which it wraps in one) replayed as `default`: Redis
    7.0 checks that user's rights at EXEC, and a `default` without any lost them all on the restart."""
    conn = tenant(server)
    for i in range(50):
        pipe = conn.pipeline(transaction=True)
        pipe.incr("counter")
        pipe.rpush("log", i)
        pipe.execute()
    conn.eval("redis.call('set', 'scripted', 'yes'); return redis.call('incr', 'counter')", 0)
    conn.close()
    server.restart(signal.SIGKILL)
    conn = tenant(server)
    assert conn.get("counter") == b"51"
    assert conn.llen("log") == 50
    assert conn.get("scripted") == b"yes"
    conn.close()
    log = Path(server.placement.log_dir, "redis.log").read_text(errors="replace")
    assert "NOPERM" not in log


def test_no_plain_password_on_disk_or_in_the_log(server: Server) -> None:
    # Failed logins too: nothing the server writes may hold a password.
    bad = client(server.placement, TENANT, "wrong-" + TENANT_PASSWORD)
    with pytest.raises(redis.AuthenticationError):
        bad.ping()
    bad.close()
    server.restart()
    secrets_ = (TENANT_PASSWORD, server.admin_password.reveal())
    acl = aclfile(server).read_text()
    assert password_hash(TENANT_PASSWORD) in acl
    assert password_hash(server.admin_password.reveal()) in acl
    texts = {
        "aclfile": acl,
        "redis.conf": (Path(server.placement.config_dir) / CONF_FILE).read_text(),
        "log": server.log_text(),
    }
    assert texts["log"]  # the server did log something
    for name, text in texts.items():
        for secret in secrets_:
            assert secret not in text, f"a plain password is in the {name}"
    assert stat.S_IMODE(aclfile(server).stat().st_mode) == 0o600


def test_bootstrap_twice_is_a_no_op(server: Server, engine: RedisEngine) -> None:
    admin = server.admin()
    before_users = sorted(admin.acl_list())
    before_file = aclfile(server).read_text()
    engine.bootstrap(SPEC, server.placement, server.admin_password)
    assert sorted(admin.acl_list()) == before_users
    assert aclfile(server).read_text() == before_file
    admin.close()


def test_bootstrap_resets_a_tampered_user(server: Server, engine: RedisEngine) -> None:
    admin = server.admin()
    admin.execute_command("ACL", "SETUSER", TENANT, "off", "+config")
    engine.bootstrap(SPEC, server.placement, server.admin_password)
    admin.close()
    conn = tenant(server)
    with pytest.raises(redis.ResponseError):
        conn.execute_command("CONFIG", "GET", "maxmemory")
    conn.close()


def test_memory_and_persistence_are_configured(server: Server) -> None:
    admin = server.admin()
    assert admin.config_get("maxmemory") == {"maxmemory": str(256 * 1024 * 1024 // 2)}  # half the flavor: fork headroom
    assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert admin.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert admin.config_get("save") == {"save": "3600 1 300 100 60 10000"}
    assert admin.config_get("protected-mode") == {"protected-mode": "yes"}
    admin.close()


def test_listens_only_on_its_placement_address(server: Server) -> None:
    assert server.process is not None
    # The tenant port, and the replication port (TLS only, a certificate of the set's CA asked of every client).
    assert listening_sockets(server.process.pid) == {(server.placement.address, 6379), (server.placement.address, 7379)}
    mode = server.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o700
    assert Path(server.placement.run_dir, "redis.pid").read_text().strip() == str(server.process.pid)


def test_a_stopped_server_is_not_ready_and_bootstrap_is_retried(server: Server, engine: RedisEngine) -> None:
    server.stop()
    assert engine.probe(server.placement, engine.admin_user, server.admin_password, timeout=0.5) is False
    with pytest.raises(TemporaryError):
        engine.bootstrap(SPEC, server.placement, server.admin_password)


def test_bootstrap_connects_even_with_no_users_to_create(server: Server, engine: RedisEngine) -> None:
    """A create that took a warm-pool server skips `start` on its first attempt: bootstrap is what notices
    a server that died, users or not."""
    no_users = InstanceSpec(name="r", flavor_id="1", volume_size_gb=1, datastore="redis", datastore_version="7.0")
    engine.bootstrap(no_users, server.placement, server.admin_password)
    server.stop()
    with pytest.raises(TemporaryError):
        engine.bootstrap(no_users, server.placement, server.admin_password)


def test_a_user_redis_refuses_fails_for_good_and_the_password_hash_stays_hidden(
    server: Server, engine: RedisEngine
) -> None:
    password = "refused-user-pa55"
    spec = InstanceSpec(  # bypasses validation (which refuses the name first): Redis's own refusal
        name="r", flavor_id="1", volume_size_gb=1, datastore="redis", datastore_version="7.0",
        users=(UserSpec(name="has space", password=Secret(password)),),
    )
    with pytest.raises(PermanentError, match="refused to create user 'has space'") as raised:
        engine.bootstrap(spec, server.placement, server.admin_password)
    assert password_hash(password) not in raised.value.message and password not in raised.value.message


def test_a_server_without_its_acl_file_refuses_to_start(
    engine: RedisEngine, redis70: DatastoreVersion, os_user: OsUser, scratch_root: Path
) -> None:
    server = build_server(engine, redis70, os_user, scratch_root, SPEC)
    server.start()  # never initialised: no ACL file
    try:
        wait_for(lambda: not server.running, 10.0, "redis-server to exit")
        assert server.stop() != 0
        assert "ACL" in server.log_text()
    finally:
        server.stop(signal.SIGKILL)


def test_validate_spec_rejects_databases(engine: RedisEngine) -> None:
    with pytest.raises(BadRequest, match="redis does not support databases") as caught:
        engine.validate_spec(
            InstanceSpec("c", "1", 1, "redis", "7.0", databases=(DatabaseSpec("app"),))
        )
    assert caught.value.field == "instance.databases"


def test_the_replication_port_admits_only_clients_with_a_certificate(server: Server) -> None:
    """A tenant (with a password, without a certificate of the set's CA) gets nothing from the TLS port."""
    assert server.process is not None
    plain = redis.Redis(host=server.placement.address, port=7379, socket_timeout=3, socket_connect_timeout=3)
    tls = redis.Redis(host=server.placement.address, port=7379, ssl=True, ssl_cert_reqs="none", socket_timeout=3,
                      socket_connect_timeout=3)
    for attempt in (plain, tls):
        with pytest.raises(redis.RedisError):
            attempt.ping()
        attempt.close()

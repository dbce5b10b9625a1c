"""The Redis engine's pure parts: workload spec, capabilities, version parsing, ACL reply matching, errors."""

from __future__ import annotations

import signal

import pytest
import redis
from tests.fakes.redis_client import FakeRedisClient

from reddwarf.domain.capabilities import Capability
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines.redis import RedisEngine, RedisSettings, admin, config
from reddwarf.engines.redis.discovery import parse_version

PASSWORD = "Adm1n-pa55word-never-in-argv"
VERSION = DatastoreVersion("redis", "7.0", "7.0.15", "/usr/bin")
FLAVOR = Flavor(id="2", name="small", ram_mb=1024, vcpus=1)
SPEC = InstanceSpec(name="i", flavor_id="2", volume_size_gb=2, datastore="redis", datastore_version="7.0")
PLACEMENT = Placement(
    instance_id="inst-1",
    os_user="rd-inst-1",
    address="127.0.1.7",
    port=6379,
    data_dir="/srv/i/data",
    config_dir="/srv/i/config",
    log_dir="/srv/i/log",
    run_dir="/srv/i/run",
    socket_dir="/srv/i/sock", scratch_dir="/srv/i/sock-tmp",
)


@pytest.fixture
def engine() -> RedisEngine:
    return RedisEngine(RedisSettings())


def test_identity_and_capabilities(engine: RedisEngine) -> None:
    assert (engine.name, engine.default_port, engine.admin_user) == ("redis", 6379, "reddwarf_admin")
    assert engine.capabilities(VERSION).offered == frozenset({Capability.USERS, Capability.ROOT, Capability.BACKUP,
                                                              Capability.REPLICATION})
    assert engine.capabilities(VERSION).backup_strategies == ("redis_rdb",)
    assert engine.capabilities(VERSION).replication_strategies == ("replicaof",)


def test_server_runs_in_the_foreground_on_the_rendered_config(engine: RedisEngine) -> None:
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    assert workload.server.argv == (
        "/usr/bin/redis-server",
        "/srv/i/config/redis.conf",
        # After the file, so they win over it and over CONFIG REWRITE: the server stays where it was put.
        *("--bind", "127.0.1.7", "--port", "6379", "--unixsocket", "/srv/i/sock/redis.sock", "--unixsocketperm", "700"),
        *("--enable-protected-configs", "no", "--enable-debug-command", "no", "--enable-module-command", "no"),
    )
    assert workload.init == ()
    assert workload.stop_signal == signal.SIGTERM
    conf, ca, cert, key = workload.files
    assert conf.path == "/srv/i/config/redis.conf" and conf.mode == 0o600
    assert "daemonize no" in conf.content
    # The replication port's TLS files from the first start (a throwaway certificate until it joins a set), a
    # certificate asked of every client of that port; the tenant's port stays as it was.
    assert (ca.path, cert.path, key.path) == tuple(f"/srv/i/config/tls-{n}.pem" for n in ("ca", "cert", "key"))
    for line in ("tls-port 7379", 'tls-cert-file "/srv/i/config/tls-cert.pem"', "tls-auth-clients yes",
                 "tls-replication yes", "repl-diskless-sync-delay 0", "port 6379"):
        assert line in conf.content.splitlines()
    assert key.secret and "PRIVATE KEY" in key.content and "replicaof" not in conf.content
    assert (workload.resources.memory_mb, workload.resources.volume_gb) == (1024, 2)
    assert dict(workload.labels) == {"datastore": "redis", "datastore_version": "7.0"}


def test_the_acl_file_is_written_once_and_kept(engine: RedisEngine) -> None:
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    (acl,) = workload.init_files
    assert acl.path == "/srv/i/config/users.acl"
    assert not acl.secret  # secret init files are removed after init; this one must stay
    assert acl.mode == 0o600
    assert config.password_hash(PASSWORD) in acl.content
    assert all(f.path != acl.path for f in workload.files)  # never rewritten on start


def test_the_password_is_nowhere_in_plain_text(engine: RedisEngine) -> None:
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    assert PASSWORD not in " ".join(workload.server.argv)
    assert all(PASSWORD not in value for _, value in workload.server.env)
    assert all(PASSWORD not in f.content for f in (*workload.files, *workload.init_files))


def test_an_empty_admin_password_is_refused(engine: RedisEngine) -> None:
    with pytest.raises(ValueError):
        engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(""))


def test_maxmemory_percent_setting_reaches_the_config() -> None:
    engine = RedisEngine(RedisSettings(maxmemory_percent=50))
    conf = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD)).files[0]
    assert f"maxmemory {512 * 1024 * 1024}\n" in conf.content


def test_settings_refuse_relative_bin_dirs_and_silly_percentages() -> None:
    with pytest.raises(ValueError, match="absolute"):
        RedisSettings(bin_dirs=["usr/bin"])
    with pytest.raises(ValueError):
        RedisSettings(maxmemory_percent=100)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=e08dbad3e06f3fb\n",
         ("7.0", "7.0.15")),
        ("Redis server v=7.2.4 sha=00000000:0 malloc=libc bits=64", ("7.2", "7.2.4")),
        ("Redis server v=6.2 sha=0", ("6.2", "6.2")),
        ("Valkey server v=8.0.1 sha=00000000:0", ("8.0", "8.0.1")),
        ("redis-server: command not found", None),
        ("", None),
    ],
)
def test_parse_version(output: str, expected: tuple[str, str] | None) -> None:
    assert parse_version(output) == expected


def getuser_reply(**overrides: object) -> list[object]:
    fields: dict[str, object] = {
        "flags": [b"on", b"sanitize-payload"],
        "passwords": [config.password_hash("pw").encode()],
        "commands": b"+@all -@dangerous",
        "keys": b"~*",
        "channels": b"&*",
        "selectors": [],
    }
    fields.update(overrides)
    return [item for key, value in fields.items() for item in (key.encode(), value)]


def test_user_matches_exactly_what_the_rules_set() -> None:
    digest = config.password_hash("pw")
    assert admin.user_matches(getuser_reply(), digest, config.TENANT_COMMANDS)
    assert not admin.user_matches(None, digest, config.TENANT_COMMANDS)
    assert not admin.user_matches(getuser_reply(), config.password_hash("other"), config.TENANT_COMMANDS)
    assert not admin.user_matches(getuser_reply(), digest, config.ADMIN_COMMANDS)
    for override in (
        {"flags": [b"off", b"sanitize-payload"]},
        {"flags": [b"on", b"nopass", b"sanitize-payload"]},
        {"passwords": [digest.encode(), config.password_hash("extra").encode()]},
        {"commands": b"+@all"},
        {"keys": b"~app:*"},
        {"channels": b""},
        {"selectors": [[b"commands", b"+get"]]},
    ):
        assert not admin.user_matches(getuser_reply(**override), digest, config.TENANT_COMMANDS), override


def test_a_refused_user_is_permanent_and_the_hash_is_masked() -> None:
    digest = config.password_hash("pw")
    fake = FakeRedisClient(setuser_error=redis.ResponseError(f"Error in ACL SETUSER modifier '#{digest}': bad"))
    with pytest.raises(PermanentError) as caught:
        admin.ensure_user(fake, UserSpec("alice", Secret("pw")))
    assert digest not in caught.value.message and "pw" not in caught.value.message
    assert "alice" in caught.value.message


def test_a_lost_connection_is_temporary() -> None:
    fake = FakeRedisClient(setuser_error=redis.ConnectionError("Connection reset by peer"))
    with pytest.raises(TemporaryError):
        admin.ensure_user(fake, UserSpec("alice", Secret("pw")))


def test_setuser_sends_only_the_hash() -> None:
    fake = FakeRedisClient()
    assert admin.ensure_user(fake, UserSpec("alice", Secret("pw")))
    setuser = fake.calls[-1]
    assert setuser[:3] == ("ACL", "SETUSER", "alice")
    assert "pw" not in setuser and "#" + config.password_hash("pw") in setuser


def test_a_failing_acl_save_is_temporary() -> None:
    with pytest.raises(TemporaryError):
        fake = FakeRedisClient(save_error=redis.ResponseError("There was an error trying to save the ACLs"))
        admin.save_acl(fake)

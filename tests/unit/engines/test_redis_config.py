"""The Redis engine's pure renderers: redis.conf, the initial ACL file, ACL rules and password hashes."""

from __future__ import annotations

import hashlib

import pytest

from reddwarf.domain.workload import Placement, Resources
from reddwarf.engines.redis import config

PLACEMENT = Placement(
    instance_id="inst-1",
    os_user="rd-inst-1",
    address="127.0.1.9",
    port=6379,
    data_dir="/srv/i/data",
    config_dir="/srv/i/config",
    log_dir="/srv/i/log",
    run_dir="/srv/i/run",
    socket_dir="/srv/i/sock", scratch_dir="/srv/i/sock-tmp",
)
RESOURCES = Resources(memory_mb=1024, vcpus=1, volume_gb=2)


def directives(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            assert name not in found, f"{name} is set twice"
            found[name] = value
    return found


def test_password_hash_is_redis_sha256_hex() -> None:
    assert config.password_hash("secret") == "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
    assert config.password_hash("pässword") == hashlib.sha256("pässword".encode()).hexdigest()


def test_redis_conf_binds_the_placement_and_keeps_a_private_socket() -> None:
    conf = directives(config.render_redis_conf(PLACEMENT, RESOURCES))
    assert conf["bind"] == '"127.0.1.9"'
    assert conf["port"] == "6379"
    assert conf["protected-mode"] == "yes"
    assert conf["unixsocket"] == '"/srv/i/sock/redis.sock"'
    assert conf["unixsocketperm"] == "700"
    assert conf["daemonize"] == "no"
    assert conf["dir"] == '"/srv/i/data"'
    assert conf["pidfile"] == '"/srv/i/run/redis.pid"'
    assert conf["logfile"] == '"/srv/i/log/redis.log"'
    assert conf["aclfile"] == '"/srv/i/config/users.acl"'
    assert "requirepass" not in conf and "rename-command" not in conf


def test_redis_conf_persists_with_rdb_and_aof_and_never_evicts() -> None:
    conf = directives(config.render_redis_conf(PLACEMENT, RESOURCES))
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["save"] == "3600 1 300 100 60 10000"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["maxmemory"] == str(1024 * 1024 * 1024 // 2)


def test_a_snapshots_fork_has_headroom_and_is_the_oom_victim_not_the_server() -> None:
    """Half the flavor is the dataset's, the other half the fork's copy-on-write; past it the child dies."""
    conf = directives(config.render_redis_conf(PLACEMENT, RESOURCES))
    assert int(conf["maxmemory"]) * 2 <= RESOURCES.memory_mb * 1024 * 1024
    assert conf["oom-score-adj"] == "relative"
    master, replica, child = (int(value) for value in conf["oom-score-adj-values"].strip('"').split())
    assert child > max(master, replica)


@pytest.mark.parametrize(
    ("memory_mb", "percent", "expected"),
    [(1024, 75, 805306368), (256, 50, 134217728), (16, 75, 16 * 1024 * 1024)],
)
def test_maxmemory_is_a_share_of_the_flavor(memory_mb: int, percent: int, expected: int) -> None:
    assert config.maxmemory_bytes(memory_mb, percent) == expected


def test_maxmemory_percent_comes_from_the_settings() -> None:
    conf = directives(config.render_redis_conf(PLACEMENT, RESOURCES, maxmemory_percent=50))
    assert conf["maxmemory"] == str(512 * 1024 * 1024)


@pytest.mark.parametrize(("memory_mb", "percent"), [(0, 75), (-1, 75), (1024, 0), (1024, 101)])
def test_maxmemory_refuses_nonsense(memory_mb: int, percent: int) -> None:
    with pytest.raises(ValueError):
        config.maxmemory_bytes(memory_mb, percent)


def test_paths_are_quoted_and_line_breaks_refused() -> None:
    assert config.quote('a "b" \\c') == '"a \\"b\\" \\\\c"'
    for bad in ("a\nb", "a\rb", "a\0b"):
        with pytest.raises(ValueError):
            config.quote(bad)
    broken = Placement(
        instance_id="inst-1", os_user="u", address="127.0.1.9", port=6379, data_dir="/d\nmaxmemory 0",
        config_dir="/c", log_dir="/l", run_dir="/r", socket_dir="/s", scratch_dir="/s-tmp",
    )
    with pytest.raises(ValueError):
        config.render_redis_conf(broken, RESOURCES)


def test_aclfile_turns_default_off_and_holds_only_the_admin_hash() -> None:
    text = config.render_aclfile("reddwarf_admin", "Adm1n-pa55word")
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["user", "default", "off"]
    assert "nopass" not in text and "#" not in lines[0] and ">" not in text
    admin = lines[1].split()
    assert admin[:2] == ["user", "reddwarf_admin"]
    assert "on" in admin and "+@all" in admin and "~*" in admin and "&*" in admin
    assert f"#{config.password_hash('Adm1n-pa55word')}" in admin
    assert "Adm1n-pa55word" not in text
    assert len(lines) == 2


def test_aclfile_refuses_an_admin_name_that_would_break_the_file() -> None:
    for bad in ("", "a b", "a\nb"):
        with pytest.raises(ValueError):
            config.render_aclfile(bad, "pw")


def test_tenant_rules_exclude_dangerous_commands() -> None:
    rules = config.tenant_rules("pw")
    assert rules[:2] == ("reset", "on")
    assert rules[2] == "#" + config.password_hash("pw")
    assert rules[3:] == ("~*", "&*", "+@all", "-@dangerous")
    assert "pw" not in rules
    assert config.admin_rules("pw")[3:] == ("~*", "&*", "+@all")

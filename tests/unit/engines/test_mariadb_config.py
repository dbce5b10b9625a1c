"""The MariaDB engine's pure renderers: my.cnf, memory sizing, install SQL, quoting, password hashes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reddwarf.domain.instance import DatabaseSpec
from reddwarf.domain.workload import Placement, Resources
from reddwarf.engines.mariadb import config, passwords
from reddwarf.engines.mariadb.admin import create_database_sql, grant_pattern, logs_in_without_password

PLACEMENT = Placement(
    instance_id="inst-1",
    os_user="rd-inst-1",
    address="127.0.1.7",
    port=3306,
    data_dir="/srv/i/volume/data",
    config_dir="/srv/i/config",
    log_dir="/srv/i/log",
    run_dir="/srv/i/run",
    socket_dir="/run/rd/i", scratch_dir="/run/rd/i-tmp",
)


def options(text: str) -> dict[str, str]:
    section = text.split("[mariadbd]", 1)[1].split("[client]", 1)[0]
    pairs = [line.split(" = ", 1) for line in section.splitlines() if " = " in line]
    return {key: value for key, value in pairs}


def test_my_cnf_confines_the_server_to_its_instance() -> None:
    opts = options(config.render_my_cnf(PLACEMENT, Resources(memory_mb=1024, vcpus=1, volume_gb=2)))
    assert opts["datadir"] == "/srv/i/volume/data/db"
    assert opts["secure_file_priv"] == "/srv/i/volume/data/files"
    assert opts["tmpdir"] == "/srv/i/volume/data/tmp"
    assert opts["socket"] == "/run/rd/i/mysqld.sock"
    assert opts["pid_file"] == "/srv/i/run/mariadbd.pid"
    assert opts["log_error"] == "/srv/i/log/error.log"
    assert (opts["bind_address"], opts["port"]) == ("127.0.1.7", "3306")
    assert opts["skip_name_resolve"] == "ON"
    assert opts["local_infile"] == "OFF"
    assert opts["general_log"] == "OFF" and opts["slow_query_log"] == "OFF"
    assert opts["character_set_server"] == "utf8mb4"
    assert opts["innodb_buffer_pool_size"] == "512M"
    assert opts["max_connections"] == "128"
    assert opts["innodb_log_file_size"] == "128M"
    assert opts["host_cache_size"] == "0"


def test_my_cnf_is_pure() -> None:
    resources = Resources(memory_mb=512, vcpus=1, volume_gb=1)
    assert config.render_my_cnf(PLACEMENT, resources) == config.render_my_cnf(PLACEMENT, resources)


@pytest.mark.parametrize(
    ("memory_mb", "pool", "connections"),
    [(128, 48, 30), (256, 96, 32), (1024, 512, 128), (4096, 2048, 512), (65536, 32768, 1000)],
)
def test_memory_follows_the_flavor(memory_mb: int, pool: int, connections: int) -> None:
    sizes = config.memory_settings(memory_mb, 1)
    assert (sizes.buffer_pool_mb, sizes.max_connections) == (pool, connections)
    assert sizes.buffer_pool_mb < memory_mb


def test_redo_log_follows_the_volume() -> None:
    assert config.memory_settings(256, 1).log_file_mb == 64
    assert config.memory_settings(256, 100).log_file_mb == 2048
    with pytest.raises(ValueError, match="positive"):
        config.memory_settings(0, 1)


def test_unsafe_paths_and_addresses_are_refused() -> None:
    with pytest.raises(ValueError, match=r"my\.cnf"):
        config.layout(replace(PLACEMENT, data_dir="/srv/i # comment"))
    with pytest.raises(ValueError):
        config.render_my_cnf(replace(PLACEMENT, address="db.example.com"), Resources(256, 1, 1))


def test_admin_hosts_cover_loopback_socket_and_the_placement() -> None:
    assert config.admin_hosts(PLACEMENT) == ("127.0.0.1", "localhost", "127.0.1.7")
    assert config.admin_hosts(replace(PLACEMENT, address="127.0.0.1")) == ("127.0.0.1", "localhost")


def test_install_sql_drops_default_accounts_and_holds_only_a_hash() -> None:
    digest = passwords.native_hash("admin-secret")
    sql = config.render_install_sql("reddwarf_admin", digest, ("127.0.0.1", "localhost"))
    assert "admin-secret" not in sql
    assert sql.startswith("-- ") and "FLUSH PRIVILEGES;" in sql
    assert "DROP USER" in sql and "EXECUTE IMMEDIATE @reddwarf_drop;" in sql
    assert "CREATE USER `reddwarf_admin`@`localhost` IDENTIFIED BY PASSWORD '" + digest + "';" in sql
    assert "GRANT ALL PRIVILEGES ON *.* TO `reddwarf_admin`@`127.0.0.1` WITH GRANT OPTION;" in sql
    with pytest.raises(ValueError, match="hash"):
        config.render_install_sql("reddwarf_admin", "plain-password", ("localhost",))


def test_identifiers_are_backtick_quoted() -> None:
    assert config.quote_identifier("we`ird") == "`we``ird`"
    assert config.account("o'b", "%") == "`o'b`@`%`"
    with pytest.raises(ValueError, match="NUL"):
        config.quote_identifier("a\0b")


def test_grant_patterns_escape_wildcards() -> None:
    assert grant_pattern("app_1") == "`app\\_1`"
    assert grant_pattern("100%") == "`100\\%`"
    assert grant_pattern("a`b") == "`a``b`"


def test_create_database_statements() -> None:
    assert create_database_sql(DatabaseSpec("app")) == "CREATE DATABASE IF NOT EXISTS `app`"
    assert (
        create_database_sql(DatabaseSpec("x`y", "UTF-8", "UTF8MB3_BIN"))
        == "CREATE DATABASE IF NOT EXISTS `x``y` CHARACTER SET utf8 COLLATE utf8mb3_bin"
    )


def test_native_password_hash_is_mariadbs() -> None:
    # SELECT PASSWORD('s3cret') on MariaDB 10.11.
    assert passwords.native_hash("s3cret") == "*B865CAE8F340F6CE1485A06F4492BB49718DF1EC"
    assert passwords.matches("s3cret", "*b865cae8f340f6ce1485a06f4492bb49718df1ec")
    assert not passwords.matches("other", passwords.native_hash("s3cret"))
    assert not passwords.matches("s3cret", None)
    assert passwords.mask_hashes("near '*B865CAE8F340F6CE1485A06F4492BB49718DF1EC'") == "near '*<hash>'"


@pytest.mark.parametrize(
    ("priv", "passwordless"),
    [
        ({"plugin": "mysql_native_password", "authentication_string": "*AB"}, False),
        ({"plugin": "mysql_native_password", "authentication_string": ""}, True),
        ({}, True),
        ({"plugin": "unix_socket"}, True),
        ({"plugin": "mysql_native_password", "authentication_string": "invalid",
          "auth_or": [{}, {"plugin": "unix_socket"}]}, True),
        ({"plugin": "mysql_native_password", "authentication_string": "", "account_locked": True}, False),
        ({"is_role": True}, False),
        ({"plugin": "ed25519", "authentication_string": "xyz"}, False),
    ],
)  # fmt: skip
def test_passwordless_accounts_are_recognised(priv: dict[str, object], passwordless: bool) -> None:
    assert logs_in_without_password(priv) is passwordless

"""A tenant's `root` on MariaDB 10.11 is the managed-service root: every row of docs/root-privileges.md,
and every escape to the host, reach for Reddwarf's admin account or move of the server tried and refused.

Also the server's address, port, socket and secure_file_priv pinned on its command line, above my.cnf.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pymysql
import pytest
from mariadb_harness import OsUser, Server, running_server

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import FileSpec
from reddwarf.engines.mariadb import MariadbEngine, MariadbSettings
from reddwarf.engines.mariadb.accounts import MariadbAccounts
from reddwarf.engines.mariadb.config import layout

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

ROOT_PASSWORD = Secret("r00t-" + secrets.token_urlsafe(12))
ALICE = UserSpec("alice", Secret("alice-" + secrets.token_urlsafe(8)), databases=("shop",))
SPEC = InstanceSpec(
    name="root",
    flavor_id="1",
    volume_size_gb=1,
    datastore="mariadb",
    datastore_version="10.11",
    databases=(DatabaseSpec("shop"), DatabaseSpec("empty")),
    users=(ALICE,),
)
# Access denied (database, user, table, column, specific privilege, routine); an option (secure_file_priv,
# read only) prevents the statement; a read-only variable; not the owner of a thread (KILL); no account
# may be created by GRANT.
REFUSALS = {1044, 1045, 1142, 1143, 1227, 1370, 1290, 1238, 1095, 1410}


@pytest.fixture(scope="module")
def server(
    engine: MariadbEngine, mariadb1011: DatastoreVersion, os_user: OsUser, module_scratch: Path
) -> Iterator[Server]:
    with running_server(engine, mariadb1011, os_user, module_scratch / "root", SPEC) as running:
        running.engine.bootstrap(SPEC, running.placement, running.admin_password)
        with connect(running, ALICE.name, ALICE.password, "shop") as conn:
            run(conn, "CREATE TABLE orders (id int)")
            run(conn, "INSERT INTO orders VALUES (1)")
        yield running


@pytest.fixture(scope="module")
def accounts(server: Server) -> MariadbAccounts:
    found = server.engine.accounts(server.placement, server.admin_password)
    assert found.enable_root(ROOT_PASSWORD) == "root"
    return found


def connect(server: Server, user: str, password: Secret, database: str | None = None) -> Any:
    return pymysql.connect(
        host=server.placement.address,
        port=server.placement.port,
        user=user,
        password=password.reveal().encode("utf-8"),
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=5,
        ssl_disabled=True,
    )


def as_root(server: Server, database: str | None = None) -> Any:
    return connect(server, "root", ROOT_PASSWORD, database)


def as_admin(server: Server) -> Any:
    return connect(server, server.engine.admin_user, server.admin_password)


def run(conn: Any, statement: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(statement)
        return list(cursor.fetchall())


def refused(conn: Any, statement: str) -> bool:
    """True when MariaDB refuses `statement` for lack of privilege (any other error propagates)."""
    try:
        run(conn, statement)
    except (pymysql.err.OperationalError, pymysql.err.InternalError, pymysql.err.ProgrammingError) as exc:
        if exc.args and exc.args[0] in REFUSALS:
            return True
        raise
    return False


# -- point 3: the rows of docs/root-privileges.md ---------------------------------------------------


def test_root_privileges_are_those_of_the_table(server: Server, accounts: MariadbAccounts) -> None:
    with as_root(server) as conn:
        granted = {row[0] for row in run(conn, "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES")}
        assert granted == {"SHOW DATABASES", "PROCESS"}
        on_shop = run(
            conn,
            "SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES WHERE TABLE_SCHEMA = 'shop'",
        )
        assert {
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "CREATE",
            "DROP",
            "ALTER",
            "INDEX",
            "TRIGGER",
            "CREATE VIEW",
            "CREATE ROUTINE",
            "EVENT",
            "LOCK TABLES",
        } <= {p for p, _ in on_shop}
        assert {grantable for _, grantable in on_shop} == {"YES"}
        schemas = run(conn, "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.SCHEMA_PRIVILEGES")
        assert {name for (name,) in schemas} == {"shop", "empty"}  # nothing on mysql, sys, ...
        assert refused(conn, "CREATE DATABASE rootmade")  # databases come through the API


def test_root_reaches_all_tenant_data_and_schema(server: Server, accounts: MariadbAccounts) -> None:
    with as_root(server, "shop") as conn:
        assert run(conn, "SELECT id FROM orders") == [(1,)]
        run(conn, "INSERT INTO orders VALUES (2)")
        run(conn, "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text")
        run(conn, "CREATE OR REPLACE VIEW order_ids AS SELECT id FROM orders")
        run(conn, "CREATE OR REPLACE PROCEDURE count_orders() SELECT count(*) FROM orders")
        run(conn, "GRANT SELECT ON shop.orders TO alice")  # root may pass on what it holds
    with as_root(server, "empty") as conn:
        run(conn, "CREATE TABLE IF NOT EXISTS t (v int)")
    accounts.create_databases([DatabaseSpec("later_db")])  # made after root: reached too
    with as_root(server, "later_db") as conn:
        run(conn, "CREATE TABLE IF NOT EXISTS t (v int)")
    accounts.delete_database("later_db")
    with as_admin(server) as conn:
        assert run(conn, "SELECT User FROM mysql.db WHERE Db = 'later\\\\_db'") == []  # no grant left behind


# -- point 3: escapes to the host, and power over the admin ------------------------------------------


def test_root_cannot_reach_the_host(server: Server, accounts: MariadbAccounts, module_scratch: Path) -> None:
    elsewhere = module_scratch / ("elsewhere-" + secrets.token_hex(4))
    elsewhere.mkdir()
    elsewhere.chmod(0o777)  # writable by the instance's OS user: only MariaDB's own rules may stop it
    planted = elsewhere / "planted"
    files_dir = layout(server.placement).files_dir
    with as_root(server, "shop") as conn:
        for statement in (
            f"SELECT 'x' INTO OUTFILE '{planted}'",
            f"SELECT 'x' INTO DUMPFILE '{planted}'",
            f"SELECT 'x' INTO OUTFILE '{files_dir}/inside'",  # no FILE at all
            "LOAD DATA INFILE '/etc/passwd' INTO TABLE orders",
            "INSTALL SONAME 'ha_blackhole'",
            "INSTALL PLUGIN blackhole SONAME 'ha_blackhole'",
            "UNINSTALL SONAME 'auth_ed25519'",
            f"SET GLOBAL general_log_file = '{planted}'",
            "SET GLOBAL general_log = ON",
            f"SET GLOBAL slow_query_log_file = '{planted}'",
            "SET GLOBAL read_only = ON",
            "SET GLOBAL max_connections = 1",
            "SELECT * FROM mysql.global_priv",
            "UPDATE mysql.global_priv SET Priv = '{}'",
            "CREATE TABLE mysql.planted (v int)",
            "DROP TABLE mysql.proxies_priv",
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = 3399",
            "START SLAVE",
            "BINLOG 'AAAA'",
            "PURGE BINARY LOGS BEFORE NOW()",
            "FLUSH PRIVILEGES",
            "FLUSH TABLES WITH READ LOCK",
            "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (HOST '127.0.0.1')",
            "SHUTDOWN",
        ):
            assert refused(conn, statement), statement
        assert run(conn, "SELECT LOAD_FILE('/etc/passwd')") == [(None,)]
        # DATA DIRECTORY (symbolic links are off): the table stays in the datadir, never where root says.
        with contextlib.suppress(pymysql.err.MySQLError):
            run(conn, f"CREATE TABLE outside (v int) DATA DIRECTORY = '{elsewhere}'")
    assert not planted.exists()
    assert list(elsewhere.iterdir()) == []


def test_root_has_no_power_over_the_admin(server: Server, accounts: MariadbAccounts) -> None:
    admin = server.engine.admin_user
    with as_admin(server) as held, as_root(server) as conn:
        (thread,) = run(held, "SELECT CONNECTION_ID()")[0]
        for host in ("127.0.0.1", "localhost", server.placement.address):
            who = f"`{admin}`@`{host}`"
            for statement in (
                f"DROP USER {who}",
                f"ALTER USER {who} ACCOUNT LOCK",
                f"ALTER USER {who} IDENTIFIED BY 'x'",
                f"ALTER USER {who} WITH MAX_USER_CONNECTIONS 1",
                f"SET PASSWORD FOR {who} = PASSWORD('x')",
                f"RENAME USER {who} TO `gone`@`{host}`",
                f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who}",
            ):
                assert refused(conn, statement), statement
        for statement in (
            f"KILL CONNECTION {thread}",
            f"KILL QUERY {thread}",
            f"KILL USER `{admin}`",
            "CREATE USER helper IDENTIFIED BY 'x'",
            "GRANT SELECT ON shop.* TO helper@'%' IDENTIFIED BY 'x'",  # GRANT that would create an account
            f"GRANT ALL PRIVILEGES ON *.* TO `{admin}`@`localhost`",
            "CREATE ROLE helper",
        ):
            assert refused(conn, statement), statement
        assert run(held, "SELECT 1") == [(1,)]  # its session survived
    assert server.engine.probe(server.placement, admin, server.admin_password)


# -- point 5: no tenant moves the server ------------------------------------------------------------


def test_no_tenant_can_move_the_server(server: Server, accounts: MariadbAccounts) -> None:
    for who, password, database in (("root", ROOT_PASSWORD, None), (ALICE.name, ALICE.password, "shop")):
        with connect(server, who, password, database) as conn:
            for statement in (
                "SET GLOBAL port = 3399",
                "SET GLOBAL bind_address = '0.0.0.0'",
                "SET GLOBAL socket = '/tmp/mysqld.sock'",
                "SET GLOBAL secure_file_priv = ''",
                "SET GLOBAL general_log_file = '/tmp/general.log'",
                "SET GLOBAL log_bin_basename = '/tmp/binlog'",
                "SET GLOBAL plugin_dir = '/tmp'",
            ):
                assert refused(conn, statement), (who, statement)


def test_root_superuser_setting_gives_all_privileges_but_read_only_admin(
    server: Server, accounts: MariadbAccounts
) -> None:
    with as_root(server) as conn:
        assert refused(conn, "SELECT count(*) FROM mysql.global_priv")
    vm_like = MariadbEngine(MariadbSettings(root_superuser=True)).accounts(server.placement, server.admin_password)
    try:
        vm_like.enable_root(ROOT_PASSWORD)
        with as_root(server) as conn:
            assert run(conn, "SELECT count(*) > 0 FROM mysql.global_priv") == [(1,)]
            # Never past a replica's read_only: READ_ONLY ADMIN is the one privilege such a root lacks.
            grants = " ".join(str(row[0]) for row in run(conn, "SHOW GRANTS FOR CURRENT_USER"))
            assert "READ_ONLY ADMIN" not in grants and "DELETE HISTORY" in grants, grants
    finally:
        accounts.enable_root(ROOT_PASSWORD)
    with as_root(server) as conn:
        assert refused(conn, "SELECT count(*) FROM mysql.global_priv")


# Last: it restarts the server.
def test_the_command_line_pins_address_port_socket_and_files(server: Server, accounts: MariadbAccounts) -> None:
    paths = layout(server.placement)
    text = next(f.content for f in server.workload.files if f.path == paths.config_file)
    moved = (
        text.replace(f"bind_address = {server.placement.address}", "bind_address = 127.0.0.1")
        .replace(f"port = {server.placement.port}", "port = 3399")
        .replace(f"secure_file_priv = {paths.files_dir}", "secure_file_priv = ")
        .replace(f"socket = {paths.socket}\n\n", f"socket = {paths.socket}.moved\n\n")
    )
    assert moved.count("3399") == 1 and "127.0.0.1" in moved and "secure_file_priv = \n" in moved
    original = server.workload
    server.stop()
    server.workload = replace(original, files=(FileSpec(paths.config_file, moved, mode=0o600),))
    try:
        server.start()
        server.wait_ready()
        with as_admin(server) as conn:
            found = run(conn, "SELECT @@bind_address, @@port, @@socket, @@secure_file_priv")[0]
        assert found == (server.placement.address, server.placement.port, paths.socket, paths.files_dir + "/")
    finally:
        server.stop()
        server.workload = original
        server.start()
        server.wait_ready()

"""The MariaDB engine against a real MariaDB 10.11 server run by the harness in conftest.py."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pymysql
import pytest
from mariadb_harness import OsUser, Server, free_address, make_placement, running_server
from tests.support.server import wait_for

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import BadRequest, PermanentError, TemporaryError
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.mariadb import MariadbEngine
from reddwarf.engines.mariadb.admin import logs_in_without_password

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

WEIRD_DB = "we`ird'; DROP DATABASE mysql; --"
UNICODE_DB = "данные ✓"
LATIN_DB = "latin one"
UNDERSCORE_DB = "app_1"
WEIRD_USER = "o'brien `q`; x"
ALICE = UserSpec("alice", Secret("alice-pa55 with spaces"), databases=("app", WEIRD_DB))
BOB = UserSpec(WEIRD_USER, Secret("b0b'; DROP USER alice; --"), databases=("app",))
CAROL = UserSpec("ユーザー", Secret("p\u00e4ssw\u00f6rd-\u2713"), host="127.0.0.1", databases=(UNICODE_DB,))
ERIN = UserSpec("erin", Secret("erin-underscore"), databases=(UNDERSCORE_DB,))
SPEC = InstanceSpec(
    name="it",
    flavor_id="1",
    volume_size_gb=1,
    datastore="mariadb",
    datastore_version="10.11",
    databases=(
        DatabaseSpec("app"),
        DatabaseSpec(WEIRD_DB),
        DatabaseSpec(UNICODE_DB, "utf8mb4", "utf8mb4_bin"),
        DatabaseSpec(LATIN_DB, "latin1"),
        DatabaseSpec(UNDERSCORE_DB),
    ),
    users=(ALICE, BOB, CAROL, ERIN),
)
ALL_PASSWORDS = [u.password.reveal() for u in SPEC.users]


@pytest.fixture(scope="module")
def server(
    engine: MariadbEngine, mariadb1011: DatastoreVersion, os_user: OsUser, module_scratch: Path
) -> Iterator[Server]:
    engine.validate_spec(SPEC)
    with running_server(engine, mariadb1011, os_user, module_scratch / "main", SPEC) as running:
        engine.bootstrap(SPEC, running.placement, running.admin_password)
        yield running


def connect(server: Server, user: str, password: Secret, database: str | None = None, **extra: Any) -> Any:
    return pymysql.connect(
        host=server.placement.address,
        port=server.placement.port,
        user=user,
        password=password.reveal().encode("utf-8"),  # as every MariaDB client sends it
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=5,
        **extra,
    )


def admin(server: Server) -> Any:
    return connect(server, server.engine.admin_user, server.admin_password)


def tenant_logs_in(server: Server, user: str, password: Secret, database: str | None = None) -> bool:
    """A tenant's login over TCP to the endpoint (the engine's own probe uses the unix socket, where a
    MariaDB client comes from `localhost`, which `user@127.0.0.1` does not admit)."""
    try:
        connect(server, user, password, database).close()
    except pymysql.err.OperationalError:
        return False
    return True


def rows(server: Server, query: str, params: tuple[object, ...] | None = None) -> list[tuple[Any, ...]]:
    conn = admin(server)
    try:
        with conn.cursor() as cursor:
            cursor.execute(query, params)
            return list(cursor.fetchall())
    finally:
        conn.close()


def scalar(server: Server, query: str, params: tuple[object, ...] | None = None) -> Any:
    return rows(server, query, params)[0][0]


def test_the_installed_version_is_discovered(engine: MariadbEngine, mariadb1011: DatastoreVersion) -> None:
    assert mariadb1011.number.startswith("10.11.")
    assert mariadb1011.bin_dir == "/usr/sbin"
    assert engine.versions() == [mariadb1011]  # cached and stable


def test_no_account_logs_in_without_a_password(server: Server) -> None:
    accounts = {
        (user, host): json.loads(priv)
        for user, host, priv in rows(server, "SELECT User, Host, Priv FROM mysql.global_priv")
    }
    assert not [who for who, priv in accounts.items() if logs_in_without_password(priv)]
    assert not [who for who in accounts if who[0] in ("root", "", server.user.name)]
    assert accounts[("mariadb.sys", "localhost")]["account_locked"] is True
    admin_hosts = {host for user, host in accounts if user == "reddwarf_admin"}
    assert admin_hosts == {"127.0.0.1", "localhost", server.placement.address}


def test_root_cannot_log_in_even_over_the_unix_socket(server: Server) -> None:
    # This test runs as the OS root user: a default unix_socket root account would let it in.
    socket_path = str(Path(server.placement.socket_dir) / "mysqld.sock")
    for user in ("root", server.user.name):
        with pytest.raises(pymysql.err.OperationalError) as caught:
            pymysql.connect(unix_socket=socket_path, user=user, password="", connect_timeout=5)
        assert caught.value.args[0] in (1045, 1698)
    with pytest.raises(pymysql.err.OperationalError):
        connect(server, "root", Secret(""))


def test_admin_logs_in_only_with_its_password(server: Server) -> None:
    engine = server.engine
    assert engine.probe(server.placement, engine.admin_user, server.admin_password)
    assert not engine.probe(server.placement, engine.admin_user, Secret("not-the-password"))
    with pytest.raises(pymysql.err.OperationalError) as caught:
        connect(server, engine.admin_user, Secret("not-the-password"))
    assert caught.value.args[0] == 1045
    grants = " ".join(row[0] for row in rows(server, "SHOW GRANTS"))
    assert "GRANT ALL PRIVILEGES ON *.*" in grants and "WITH GRANT OPTION" in grants
    assert all(not Path(f.path).exists() for f in server.workload.init_files)


def test_configuration_follows_the_placement_and_flavor(server: Server) -> None:
    p = server.placement
    values = rows(
        server,
        "SELECT @@bind_address, @@port, @@socket, @@datadir, @@secure_file_priv, @@tmpdir, @@local_infile,"
        " @@general_log, @@slow_query_log, @@skip_name_resolve, @@character_set_server, @@collation_server,"
        " @@innodb_buffer_pool_size, @@max_connections, @@log_error, @@pid_file",
    )[0]
    data = Path(p.data_dir)
    assert values[0:3] == (p.address, p.port, str(Path(p.socket_dir) / "mysqld.sock"))
    assert values[3].rstrip("/") == str(data / "db")
    assert values[4].rstrip("/") == str(data / "files")
    assert values[5] == str(data / "tmp")
    assert values[6:10] == (0, 0, 0, 1)
    assert values[10:12] == ("utf8mb4", "utf8mb4_unicode_ci")
    assert values[12] == 96 * 1024 * 1024  # 3/8 of the tiny flavor's 256 MiB
    assert values[13] == 32
    assert values[14] == str(Path(p.log_dir) / "error.log")
    assert values[15] == str(Path(p.run_dir) / "mariadbd.pid")
    assert server.error_log.stat().st_size > 0


def test_a_server_at_rest_writes_its_dirty_pages_out(server: Server) -> None:
    """A snapshot's copy recovers from the server's last checkpoint, so the time a branch takes to answer grows
    with the pages left dirty. With InnoDB's defaults a server at rest never flushes them (its low-water mark
    is 0): the rendered configuration makes it drain to 1 % of its buffer pool."""
    pool_pages = scalar(server, "SELECT @@innodb_buffer_pool_size") // scalar(server, "SELECT @@innodb_page_size")
    rows(server, "CREATE TABLE app.flush_probe (id INT PRIMARY KEY, body CHAR(200) NOT NULL) ENGINE=InnoDB")
    try:
        rows(server, "INSERT INTO app.flush_probe SELECT seq, REPEAT('x', 200) FROM app.seq_1_to_150000")

        def dirty() -> int:
            return int(rows(server, "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")[0][1])

        started = dirty()
        assert started > 2 * (pool_pages // 100)  # well above the mark, or the test would prove nothing
        wait_for(lambda: dirty() <= pool_pages // 100, 60, f"{started} dirty pages to be written out")
    finally:
        rows(server, "DROP TABLE app.flush_probe")


def test_files_are_reachable_only_inside_the_instance(server: Server) -> None:
    files_dir = Path(server.placement.data_dir) / "files"
    assert files_dir.stat().st_uid == server.user.uid and files_dir.stat().st_mode & 0o777 == 0o700
    conn = admin(server)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 'inside' INTO OUTFILE %s", (str(files_dir / "out.txt"),))
            for outside in ("/tmp/reddwarf-mariadb-escape.txt", str(Path(server.placement.config_dir) / "x")):
                with pytest.raises(pymysql.err.MySQLError) as caught:
                    cursor.execute("SELECT 'outside' INTO OUTFILE %s", (outside,))
                assert caught.value.args[0] == 1290  # --secure-file-priv prevents it
    finally:
        conn.close()
    assert (files_dir / "out.txt").read_text() == "inside\n"
    assert not Path("/tmp/reddwarf-mariadb-escape.txt").exists()


def test_server_listens_on_the_placement_address_only(server: Server) -> None:
    other = free_address(exclude=frozenset({server.placement.address}))
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):  # a wildcard listener would answer
        sock.settimeout(2)
        sock.connect((other, server.placement.port))


def test_databases_have_the_requested_character_sets(server: Server) -> None:
    found = {
        name: (charset, collation)
        for name, charset, collation in rows(
            server,
            "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA",
        )
    }
    assert found[UNICODE_DB] == ("utf8mb4", "utf8mb4_bin")
    assert found[LATIN_DB] == ("latin1", "latin1_swedish_ci")
    assert found["app"] == ("utf8mb4", "utf8mb4_unicode_ci")
    assert found[WEIRD_DB] == ("utf8mb4", "utf8mb4_unicode_ci")
    assert "mysql" in found  # not dropped by the injection attempt in a name


@pytest.mark.parametrize("user", SPEC.users, ids=lambda u: u.name)
def test_tenant_users_log_in_to_their_databases(server: Server, user: UserSpec) -> None:
    for database in user.databases:
        assert tenant_logs_in(server, user.name, user.password, database)


def test_tenant_users_cannot_reach_other_databases(server: Server) -> None:
    assert not tenant_logs_in(server, BOB.name, BOB.password, WEIRD_DB)
    assert not tenant_logs_in(server, CAROL.name, CAROL.password, "app")
    with pytest.raises(pymysql.err.OperationalError) as caught:
        connect(server, ALICE.name, ALICE.password, UNICODE_DB)
    assert caught.value.args[0] == 1044  # access denied to database
    # A grant on app_1 is literal: it does not cover appX1 through the `_` wildcard.
    conn = admin(server)
    try:
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE IF NOT EXISTS appX1")
    finally:
        conn.close()
    assert not tenant_logs_in(server, ERIN.name, ERIN.password, "appX1")


def test_tenant_users_work_in_their_database(server: Server) -> None:
    conn = connect(server, ALICE.name, ALICE.password, WEIRD_DB)
    try:
        with conn.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY, body TEXT)")
            cursor.execute("REPLACE INTO notes VALUES (1, 'from alice ✓')")
            cursor.execute("SELECT body FROM notes")
            assert cursor.fetchone() == ("from alice ✓",)
            with pytest.raises(pymysql.err.OperationalError) as caught:
                cursor.execute("SELECT 1 INTO OUTFILE '/tmp/nope'")
            assert caught.value.args[0] == 1227  # needs the FILE privilege, which tenants lack
    finally:
        conn.close()


def _state(server: Server) -> dict[str, object]:
    return {
        "accounts": rows(server, "SELECT User, Host, Priv FROM mysql.global_priv ORDER BY 1, 2"),
        "db": rows(server, "SELECT * FROM mysql.db ORDER BY 1, 2, 3"),
        "schemata": rows(server, "SELECT * FROM information_schema.SCHEMATA ORDER BY 2"),
    }


def test_bootstrap_twice_changes_nothing(server: Server) -> None:
    before = _state(server)
    server.engine.bootstrap(SPEC, server.placement, server.admin_password)
    assert _state(server) == before  # not even password_last_changed moved


def test_changed_password_is_reset_by_a_new_bootstrap(server: Server) -> None:
    dave = UserSpec("dave", Secret("dave-first-pass"), databases=("app",))
    server.engine.bootstrap(replace(SPEC, users=(dave,)), server.placement, server.admin_password)
    renewed = UserSpec("dave", Secret("dave-second-pass"), databases=("app",))
    server.engine.bootstrap(replace(SPEC, users=(renewed,)), server.placement, server.admin_password)
    assert tenant_logs_in(server, "dave", renewed.password, "app")
    assert not tenant_logs_in(server, "dave", dave.password, "app")
    ALL_PASSWORDS.extend([dave.password.reveal(), renewed.password.reveal()])


def test_a_passwordless_account_is_locked_by_bootstrap(server: Server) -> None:
    conn = admin(server)
    try:
        with conn.cursor() as cursor:
            cursor.execute("CREATE USER IF NOT EXISTS nopass@'%'")
            cursor.execute("CREATE USER IF NOT EXISTS ''@'localhost'")
    finally:
        conn.close()
    assert tenant_logs_in(server, "nopass", Secret(""))
    server.engine.bootstrap(SPEC, server.placement, server.admin_password)
    assert not tenant_logs_in(server, "nopass", Secret(""))
    assert rows(server, "SELECT User FROM mysql.global_priv WHERE User = ''") == []


def test_weird_names_are_rejected_with_a_clear_message(engine: MariadbEngine) -> None:
    for database, field in (("a.b", "name"), ("a/b", "name"), ("mysql", "name"), ("x\U0001f600", "name")):
        spec = replace(SPEC, databases=(DatabaseSpec(database),), users=())
        with pytest.raises(BadRequest) as caught:
            engine.validate_spec(spec)
        assert caught.value.field == f"instance.databases[0].{field}"


def test_an_unknown_collation_is_a_permanent_error_without_secrets(server: Server) -> None:
    spec = replace(SPEC, databases=(DatabaseSpec("nocoll", "utf8mb4", "utf8mb4_klingon_ci"),), users=())
    server.engine.validate_spec(spec)
    with pytest.raises(PermanentError) as caught:
        server.engine.bootstrap(spec, server.placement, server.admin_password)
    assert "nocoll" in caught.value.message and "klingon" in caught.value.message
    assert server.admin_password.reveal() not in caught.value.message


def test_an_unreachable_server_is_a_temporary_error(server: Server, os_user: OsUser, module_scratch: Path) -> None:
    nowhere = make_placement(module_scratch, os_user, free_address())
    with pytest.raises(TemporaryError):
        server.engine.bootstrap(SPEC, nowhere, server.admin_password)
    assert not server.engine.probe(nowhere, server.engine.admin_user, server.admin_password, timeout=1.0)


def test_no_password_reaches_the_error_or_general_log(server: Server) -> None:
    general = Path(server.placement.log_dir) / "general.log"
    conn = admin(server)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET GLOBAL general_log_file = %s", (str(general),))
            cursor.execute("SET GLOBAL general_log = ON")
        frank = UserSpec("frank", Secret("frank-secret-pass"), databases=("app",))
        ALL_PASSWORDS.append(frank.password.reveal())
        server.engine.bootstrap(replace(SPEC, users=(*SPEC.users, frank)), server.placement, server.admin_password)
        assert not tenant_logs_in(server, ALICE.name, Secret("wrong-password"), "app")
    finally:
        with conn.cursor() as cursor:
            cursor.execute("SET GLOBAL general_log = OFF")
        conn.close()
    logs = {path: path.read_text(errors="replace") for path in (general, server.error_log, server.output_log)}
    assert "CREATE USER" in logs[general]  # the general log did record the bootstrap's statements
    assert "Access denied for user 'alice'" in logs[server.error_log]  # and the error log the failed login
    for text in logs.values():
        for secret in [*ALL_PASSWORDS, server.admin_password.reveal()]:
            assert secret not in text


def test_sigterm_shuts_the_server_down_cleanly(
    engine: MariadbEngine, mariadb1011: DatastoreVersion, os_user: OsUser, module_scratch: Path
) -> None:
    spec = replace(SPEC, databases=(), users=())
    with running_server(engine, mariadb1011, os_user, module_scratch / "stop", spec) as other:
        assert other.stop() == 0
        assert "Shutdown complete" in other.error_log.read_text()
        other.start()  # a restart uses no init file and the admin still logs in
        other.wait_ready()

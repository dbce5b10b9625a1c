"""The MariaDB engine's live accounts (users, databases, grants, root) against a real MariaDB 10.11 server.

One server for the module; each test names its own users and databases so the tests stay independent.
Every claim is checked the way a tenant would: by logging in (or failing to) with the password.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from mariadb_harness import OsUser, Server, running_server

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import BadRequest, Conflict, NotFound
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.mariadb import MariadbEngine
from reddwarf.engines.mariadb.accounts import MariadbAccounts

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

SPEC = InstanceSpec(name="acc", flavor_id="1", volume_size_gb=1, datastore="mariadb", datastore_version="10.11")
WEIRD_DB = "we`ird'; DROP DATABASE mysql; --"  # MariaDB names hold no `\\`, `/` or `.`: refused below
UNICODE_DB = "данные ✓"
WEIRD_USER = "o'brien `q`; \\ x"
WEIRD_PASSWORD = "pa'ss`\"; DROP USER x; -- \\ ✓ é"
PASSWORDS: list[str] = [WEIRD_PASSWORD]


def secret(value: str) -> Secret:
    PASSWORDS.append(value)
    return Secret(value)


@pytest.fixture(scope="module")
def server(
    engine: MariadbEngine, mariadb1011: DatastoreVersion, os_user: OsUser, module_scratch: Path
) -> Iterator[Server]:
    with running_server(engine, mariadb1011, os_user, module_scratch / "acc", SPEC) as running:
        conn = admin_connection(running)
        try:
            with conn.cursor() as cursor:  # the general log records every statement: no password may be in it
                cursor.execute("SET GLOBAL general_log_file = %s", (str(general_log(running)),))
                cursor.execute("SET GLOBAL general_log = ON")
        finally:
            conn.close()
        yield running


@pytest.fixture(scope="module")
def accounts(server: Server) -> MariadbAccounts:
    return server.engine.accounts(server.placement, server.admin_password)


def general_log(server: Server) -> Path:
    return Path(server.placement.log_dir) / "general.log"


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
    )


def admin_connection(server: Server) -> Any:
    return connect(server, server.engine.admin_user, server.admin_password)


def query(conn: Any, statement: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(statement)
        return list(cursor.fetchall())


def can_log_in(server: Server, user: str, password: Secret, database: str | None = None) -> bool:
    """A tenant's login over TCP to the endpoint (the engine's own probe uses the unix socket, where a
    MariaDB client comes from `localhost`, which `user@127.0.0.1` does not admit)."""
    try:
        connect(server, user, password, database).close()
    except pymysql.err.OperationalError:
        return False
    return True


def test_databases_are_created_listed_and_deleted_idempotently(accounts: MariadbAccounts) -> None:
    wanted = [DatabaseSpec("shop"), DatabaseSpec(WEIRD_DB), DatabaseSpec(UNICODE_DB, "latin1")]
    accounts.create_databases(wanted)
    accounts.create_databases(wanted)  # a re-run changes nothing
    listed = {db.name: db for db in accounts.list_databases()}
    assert {"shop", WEIRD_DB, UNICODE_DB} <= set(listed)
    assert not {"mysql", "information_schema", "performance_schema", "sys"} & set(listed)
    assert listed[UNICODE_DB].character_set == "latin1" and listed[UNICODE_DB].collate == "latin1_swedish_ci"
    assert listed["shop"].character_set == "utf8mb4"
    accounts.delete_database(WEIRD_DB)
    accounts.delete_database(WEIRD_DB)  # gone already: no error
    assert WEIRD_DB not in {db.name for db in accounts.list_databases()}
    with pytest.raises(NotFound):
        accounts.delete_database("mysql")


def test_users_are_created_listed_and_log_in_with_their_passwords(server: Server, accounts: MariadbAccounts) -> None:
    accounts.create_databases([DatabaseSpec("app"), DatabaseSpec(UNICODE_DB), DatabaseSpec("app_1")])
    users = [
        UserSpec("alice", secret("alice-pa55"), databases=("app", "app_1")),
        UserSpec(WEIRD_USER, Secret(WEIRD_PASSWORD), databases=("app", UNICODE_DB)),
        UserSpec("ユーザー", secret("p\u00e4ssw\u00f6rd-\u2713"), host="127.0.0.1", databases=(UNICODE_DB,)),
    ]
    server.engine.validate_users(users)
    accounts.create_users(users)
    accounts.create_users(users)  # idempotent
    listed = {(user.name, user.host): user for user in accounts.list_users()}
    assert listed[("alice", "%")].databases == ("app", "app_1")
    assert listed[(WEIRD_USER, "%")].databases == tuple(sorted(("app", UNICODE_DB)))
    assert listed[("ユーザー", "127.0.0.1")].databases == (UNICODE_DB,)
    names = {name for name, _ in listed}
    assert not names & {server.engine.admin_user, "root", "mariadb.sys", ""}
    assert accounts.get_user(WEIRD_USER) == listed[(WEIRD_USER, "%")]
    assert accounts.get_user("ユーザー") is None  # that account is @127.0.0.1 only
    assert accounts.get_user("ユーザー", "127.0.0.1") == listed[("ユーザー", "127.0.0.1")]
    for user in users:
        for database in user.databases:
            assert can_log_in(server, user.name, user.password, database)
        assert not can_log_in(server, user.name, Secret("wrong"), user.databases[0])
    conn = connect(server, WEIRD_USER, Secret(WEIRD_PASSWORD), UNICODE_DB)
    try:
        query(conn, "CREATE TABLE notes (body TEXT)")
        query(conn, "INSERT INTO notes VALUES ('ok é')")
        assert query(conn, "SELECT body FROM notes") == [("ok é",)]
    finally:
        conn.close()
    assert not can_log_in(server, "alice", users[0].password, UNICODE_DB)


def test_grant_lets_a_user_in_and_revoke_shuts_it_out(server: Server, accounts: MariadbAccounts) -> None:
    accounts.create_databases([DatabaseSpec("ledger_1"), DatabaseSpec("ledgerX1")])
    guest = UserSpec("guest", secret("guest-pass"))
    accounts.create_users([guest])
    assert not can_log_in(server, "guest", guest.password, "ledger_1")

    accounts.grant("guest", "%", ["ledger_1"])
    accounts.grant("guest", "%", ["ledger_1"])  # idempotent
    user = accounts.get_user("guest")
    assert user is not None and user.databases == ("ledger_1",)
    assert not can_log_in(server, "guest", guest.password, "ledgerX1")  # `_` granted literally
    held = connect(server, "guest", guest.password, "ledger_1")
    try:
        query(held, "CREATE TABLE entries (amount INT)")
        accounts.revoke("guest", "%", "ledger_1")
        accounts.revoke("guest", "%", "ledger_1")  # idempotent
        with pytest.raises(pymysql.err.OperationalError):
            query(held, "SELECT 1")  # its session in that database was ended
    finally:
        held.close()
    assert not can_log_in(server, "guest", guest.password, "ledger_1")
    assert can_log_in(server, "guest", guest.password)
    user = accounts.get_user("guest")
    assert user is not None and user.databases == ()
    with pytest.raises(NotFound):
        accounts.grant("guest", "%", ["no_such_db"])
    with pytest.raises(NotFound):
        accounts.grant("guest", "10.0.0.1", ["ledger_1"])
    with pytest.raises(NotFound):
        accounts.revoke("guest", "%", "mysql")


def test_rename_keeps_the_password_and_a_new_password_replaces_the_old(
    server: Server, accounts: MariadbAccounts
) -> None:
    accounts.create_databases([DatabaseSpec("notes")])
    first = secret("first-pass ✓")
    accounts.create_users([UserSpec("carol", first, databases=("notes",))])
    accounts.update_user("carol", new_name="caroline", new_host="127.0.0.1")
    accounts.update_user("carol", new_name="caroline", new_host="127.0.0.1")  # a re-run: already done
    assert accounts.get_user("carol") is None
    renamed = accounts.get_user("caroline", "127.0.0.1")
    assert renamed is not None and renamed.databases == ("notes",)
    assert can_log_in(server, "caroline", first, "notes")

    second = Secret(WEIRD_PASSWORD)
    accounts.update_user("caroline", "127.0.0.1", new_password=second)
    accounts.update_user("caroline", "127.0.0.1", new_password=second)
    assert can_log_in(server, "caroline", second, "notes")
    assert not can_log_in(server, "caroline", first, "notes")

    accounts.create_users([UserSpec("dan", secret("dan-pass"))])
    with pytest.raises(Conflict):
        accounts.update_user("dan", new_name="caroline", new_host="127.0.0.1")
    with pytest.raises(NotFound):
        accounts.update_user("nobody", new_password=second)
    with pytest.raises(BadRequest) as caught:
        accounts.update_user("dan", new_host="db.example.com")
    assert caught.value.field == "user.host"


def test_delete_user_is_idempotent_and_ends_its_sessions(server: Server, accounts: MariadbAccounts) -> None:
    erin = UserSpec("erin", secret("erin-pass"))
    accounts.create_users([erin])
    held = connect(server, "erin", erin.password)
    try:
        accounts.delete_user("erin")
        accounts.delete_user("erin")
        with pytest.raises(pymysql.err.OperationalError):
            query(held, "SELECT 1")
    finally:
        held.close()
    assert accounts.get_user("erin") is None
    assert not can_log_in(server, "erin", erin.password)


def test_a_deleted_database_leaves_no_grant_behind(server: Server, accounts: MariadbAccounts) -> None:
    accounts.create_databases([DatabaseSpec("temp")])
    frank = UserSpec("frank", secret("frank-pass"), databases=("temp",))
    accounts.create_users([frank])
    accounts.delete_database("temp")
    user = accounts.get_user("frank")
    assert user is not None and user.databases == ()
    accounts.create_databases([DatabaseSpec("temp")])  # a new database of the same name starts clean
    assert not can_log_in(server, "frank", frank.password, "temp")


def test_the_admin_and_root_are_invisible(server: Server, accounts: MariadbAccounts) -> None:
    admin = server.engine.admin_user
    assert accounts.get_user(admin) is None and accounts.get_user(admin, "127.0.0.1") is None
    for call in (
        lambda: accounts.update_user(admin, "127.0.0.1", new_password=Secret("x")),
        lambda: accounts.delete_user(admin, "localhost"),
        lambda: accounts.grant(admin, "%", ["app"]),
        lambda: accounts.revoke(admin, "%", "app"),
        lambda: accounts.delete_user("root"),
        lambda: accounts.delete_user("mariadb.sys", "localhost"),
    ):
        with pytest.raises(NotFound):
            call()
    assert can_log_in(server, admin, server.admin_password)
    for name in (admin, "root", "mariadb.sys"):
        with pytest.raises(BadRequest) as caught:
            server.engine.validate_users([UserSpec(name, Secret("pw"))])
        assert caught.value.field == "users[0].name"
        with pytest.raises(BadRequest):
            accounts.create_users([UserSpec(name, Secret("pw"))])


def test_validation_names_the_field(engine: MariadbEngine) -> None:
    cases = [
        ([UserSpec("ok", Secret("pw"), host="db.example.com")], "users[0].host"),
        ([UserSpec("ok", Secret(""))], "users[0].password"),
        ([UserSpec("ok", Secret("pw")), UserSpec("x" * 33, Secret("pw"))], "users[1].name"),
        ([UserSpec("ok", Secret("pw"), databases=("a\\b",))], "users[0].databases"),
        ([UserSpec("ok", Secret("pw")), UserSpec("ok", Secret("pw"))], "users[1].name"),
    ]
    for users, field in cases:
        with pytest.raises(BadRequest) as caught:
            engine.validate_users(users, field="users")
        assert caught.value.field == field
    with pytest.raises(BadRequest) as caught:
        engine.validate_databases([DatabaseSpec("ok"), DatabaseSpec("sys")])
    assert caught.value.field == "databases[1].name"
    engine.validate_databases([DatabaseSpec(WEIRD_DB), DatabaseSpec(UNICODE_DB)])
    engine.validate_users([UserSpec(WEIRD_USER, Secret(WEIRD_PASSWORD), databases=(WEIRD_DB,))])


def test_root_enable_gives_the_managed_service_root_and_disable_takes_it_away(
    server: Server, accounts: MariadbAccounts
) -> None:
    assert not accounts.root_enabled()
    accounts.disable_root()  # nothing to disable: no error
    password = secret("r00t-" + WEIRD_PASSWORD)
    assert accounts.enable_root(password) == "root"
    assert accounts.root_enabled()
    assert "root" not in {user.name for user in accounts.list_users()}
    held = connect(server, "root", password)
    try:
        # The managed-service root (test_mariadb_root.py checks every privilege): no ALL ON *.*, ALL on
        # each tenant database.
        grants = " ".join(row[0] for row in query(held, "SHOW GRANTS"))
        assert "ON *.* TO `root`@`%`" in grants and "GRANT ALL PRIVILEGES ON *.*" not in grants
        assert "GRANT ALL PRIVILEGES ON `temp`.* TO `root`@`%` WITH GRANT OPTION" in grants
        again = secret("another-root-pass")
        assert accounts.enable_root(again) == "root"  # a reset: the new password only
        assert not can_log_in(server, "root", password)
        assert can_log_in(server, "root", again)
        accounts.disable_root()
        with pytest.raises(pymysql.err.OperationalError):
            query(held, "SELECT 1")
    finally:
        held.close()
    assert not accounts.root_enabled()
    assert not can_log_in(server, "root", again)
    accounts.disable_root()
    assert accounts.enable_root(password) == "root"
    assert can_log_in(server, "root", password)
    accounts.disable_root()


def test_no_password_reaches_the_server_logs(server: Server, accounts: MariadbAccounts) -> None:
    # Run last in this module: every password used above is in PASSWORDS.
    texts = [path.read_text(errors="replace") for path in (general_log(server), server.error_log, server.output_log)]
    assert "CREATE USER" in texts[0] and "RENAME USER" in texts[0]  # the general log saw the statements
    for text in texts:
        for password in [*PASSWORDS, server.admin_password.reveal()]:
            assert password not in text

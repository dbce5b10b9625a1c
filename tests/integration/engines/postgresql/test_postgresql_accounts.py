"""The PostgreSQL engine's live accounts (users, databases, grants, root) against a real PostgreSQL 15 server.

One server for the module; each test names its own users and databases so the tests stay independent.
Every claim is checked the way a tenant would: by logging in (or failing to) with the password.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_harness import OsUser, Server, running_server

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import BadRequest, Conflict, NotFound
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.postgresql import PostgresqlEngine
from reddwarf.engines.postgresql.accounts import PostgresqlAccounts

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

SPEC = InstanceSpec(name="acc", flavor_id="1", volume_size_gb=1, datastore="postgresql", datastore_version="15")
WEIRD_DB = "we\"ird'; DROP DATABASE postgres; -- \\"
UNICODE_DB = "данные ✓"
LATIN_DB = "latin one"
WEIRD_USER = 'o\'brien "q"; \\ x'
WEIRD_PASSWORD = "pa'ss\"; DROP ROLE x; -- \\ ✓ é"
PASSWORDS: list[str] = [WEIRD_PASSWORD]


def secret(value: str) -> Secret:
    PASSWORDS.append(value)
    return Secret(value)


@pytest.fixture(scope="module")
def server(engine: PostgresqlEngine, pg15: DatastoreVersion, os_user: OsUser, module_scratch: Path) -> Iterator[Server]:
    with running_server(engine, pg15, os_user, module_scratch / "acc", SPEC) as running:
        yield running


@pytest.fixture(scope="module")
def accounts(server: Server) -> PostgresqlAccounts:
    return server.engine.accounts(server.placement, server.admin_password)


def connect(server: Server, user: str, password: Secret, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(
        host=server.placement.address,
        port=server.placement.port,
        user=user,
        password=password.reveal(),
        dbname=dbname,
        autocommit=True,
        connect_timeout=5,
        passfile="/dev/null",
    )


def can_log_in(server: Server, user: str, password: Secret, dbname: str = "postgres") -> bool:
    return server.engine.probe(server.placement, user, password, dbname=dbname)


def test_databases_are_created_listed_and_deleted_idempotently(accounts: PostgresqlAccounts) -> None:
    wanted = [DatabaseSpec("shop"), DatabaseSpec(WEIRD_DB), DatabaseSpec(UNICODE_DB), DatabaseSpec(LATIN_DB, "latin1")]
    accounts.create_databases(wanted)
    accounts.create_databases(wanted)  # a re-run changes nothing
    listed = {db.name: db for db in accounts.list_databases()}
    assert {"shop", WEIRD_DB, UNICODE_DB, LATIN_DB} <= set(listed)
    assert not {"postgres", "template0", "template1"} & set(listed)
    assert listed[LATIN_DB].character_set == "LATIN1" and listed[LATIN_DB].collate == "C"
    assert listed["shop"].character_set == "UTF8" and listed[UNICODE_DB].collate == "C.UTF-8"
    accounts.delete_database(WEIRD_DB)
    accounts.delete_database(WEIRD_DB)  # gone already: no error
    assert WEIRD_DB not in {db.name for db in accounts.list_databases()}
    with pytest.raises(NotFound):
        accounts.delete_database("postgres")


def test_a_database_in_use_is_dropped(server: Server, accounts: PostgresqlAccounts) -> None:
    accounts.create_databases([DatabaseSpec("busy")])
    accounts.create_users([UserSpec("busybee", secret("busy-pass"), databases=("busy",))])
    with connect(server, "busybee", Secret("busy-pass"), "busy") as held:
        accounts.delete_database("busy")
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
    assert "busy" not in {db.name for db in accounts.list_databases()}
    assert accounts.get_user("busybee") == accounts.get_user("busybee", "%")
    user = accounts.get_user("busybee")
    assert user is not None and user.databases == ()


def test_users_are_created_listed_and_log_in_with_their_passwords(server: Server, accounts: PostgresqlAccounts) -> None:
    accounts.create_databases([DatabaseSpec("app"), DatabaseSpec(UNICODE_DB), DatabaseSpec(LATIN_DB, "latin1")])
    users = [
        UserSpec("alice", secret("alice-pa55"), databases=("app", LATIN_DB)),
        UserSpec(WEIRD_USER, Secret(WEIRD_PASSWORD), databases=("app", UNICODE_DB)),
        UserSpec("ユーザー", secret("p\u00e4ssw\u00f6rd-\ufb01"), databases=(UNICODE_DB,)),
    ]
    server.engine.validate_users(users)
    accounts.create_users(users)
    accounts.create_users(users)  # idempotent
    listed = {user.name: user for user in accounts.list_users()}
    assert listed["alice"].databases == ("app", LATIN_DB) and listed["alice"].host == "%"
    assert listed[WEIRD_USER].databases == tuple(sorted(("app", UNICODE_DB)))
    assert listed["ユーザー"].databases == (UNICODE_DB,)
    assert server.engine.admin_user not in listed and "root" not in listed
    assert not [name for name in listed if name.startswith("pg_")]
    assert accounts.get_user(WEIRD_USER) == listed[WEIRD_USER]
    for user in users:
        for database in user.databases:
            assert can_log_in(server, user.name, user.password, database)
        assert not can_log_in(server, user.name, Secret("wrong"), "app")
    with connect(server, WEIRD_USER, Secret(WEIRD_PASSWORD), UNICODE_DB) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('ok')")
    # Users never get more than they asked for: no superuser, no CREATEROLE, no other database.
    assert not can_log_in(server, "ユーザー", users[2].password, "app")
    with connect(server, "alice", users[0].password, "app") as conn:
        row = conn.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False, False)


def test_grant_lets_a_user_in_and_revoke_shuts_it_out(server: Server, accounts: PostgresqlAccounts) -> None:
    accounts.create_databases([DatabaseSpec("ledger")])
    owner = UserSpec("keeper", secret("keeper-pass"), databases=("ledger",))
    guest = UserSpec("guest", secret("guest-pass"))
    accounts.create_users([owner, guest])
    with connect(server, "keeper", owner.password, "ledger") as conn:
        conn.execute("CREATE TABLE entries (amount int)")
        conn.execute("INSERT INTO entries VALUES (42)")
    assert not can_log_in(server, "guest", guest.password, "ledger")

    accounts.grant("guest", "%", ["ledger"])
    accounts.grant("guest", "%", ["ledger"])  # idempotent
    user = accounts.get_user("guest")
    assert user is not None and user.databases == ("ledger",)
    with connect(server, "guest", guest.password, "ledger") as held:
        assert held.execute("SELECT sum(amount) FROM entries").fetchone() == (42,)
        held.execute("CREATE TABLE guestbook (line text)")  # CREATE on public
        with connect(server, "keeper", owner.password, "ledger") as conn:  # default privileges both ways
            conn.execute("INSERT INTO guestbook VALUES ('hi')")

        accounts.revoke("guest", "%", "ledger")
        accounts.revoke("guest", "%", "ledger")  # idempotent
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")  # its session in that database was ended
    assert not can_log_in(server, "guest", guest.password, "ledger")
    assert can_log_in(server, "keeper", owner.password, "ledger")
    user = accounts.get_user("guest")
    assert user is not None and user.databases == ()
    with pytest.raises(NotFound):
        accounts.grant("guest", "%", ["no_such_db"])
    with pytest.raises(NotFound):
        accounts.grant("nobody", "%", ["ledger"])
    with pytest.raises(NotFound):
        accounts.revoke("guest", "%", "no_such_db")


def test_rename_keeps_the_password_and_a_new_password_replaces_the_old(
    server: Server, accounts: PostgresqlAccounts
) -> None:
    accounts.create_databases([DatabaseSpec("notes")])
    first = secret("first-pass ✓")
    accounts.create_users([UserSpec("carol", first, databases=("notes",))])
    accounts.update_user("carol", new_name="caroline")
    accounts.update_user("carol", new_name="caroline")  # a re-run after a crash: already done
    assert accounts.get_user("carol") is None
    renamed = accounts.get_user("caroline")
    assert renamed is not None and renamed.databases == ("notes",)
    assert can_log_in(server, "caroline", first, "notes")

    second = Secret(WEIRD_PASSWORD)
    accounts.update_user("caroline", new_password=second)
    accounts.update_user("caroline", new_password=second)
    assert can_log_in(server, "caroline", second, "notes")
    assert not can_log_in(server, "caroline", first, "notes")

    accounts.update_user("caroline", new_name=WEIRD_USER + "2", new_password=first)
    assert can_log_in(server, WEIRD_USER + "2", first, "notes")

    accounts.create_users([UserSpec("dan", secret("dan-pass"))])
    with pytest.raises(Conflict):
        accounts.update_user("dan", new_name=WEIRD_USER + "2")
    with pytest.raises(NotFound):
        accounts.update_user("nobody", new_password=second)
    with pytest.raises(BadRequest) as caught:
        accounts.update_user("dan", new_host="10.0.0.1")
    assert caught.value.field == "user.host"


def test_delete_user_keeps_its_data_and_is_idempotent(server: Server, accounts: PostgresqlAccounts) -> None:
    accounts.create_databases([DatabaseSpec("kept")])
    erin = UserSpec("erin", secret("erin-pass"), databases=("kept",))
    frank = UserSpec("frank", secret("frank-pass"), databases=("kept",))
    accounts.create_users([erin, frank])
    with connect(server, "erin", erin.password, "kept") as conn:
        conn.execute("CREATE TABLE erins (x int)")
        conn.execute("INSERT INTO erins VALUES (7)")
    accounts.delete_user("erin")
    accounts.delete_user("erin")
    assert accounts.get_user("erin") is None
    assert "erin" not in {user.name for user in accounts.list_users()}
    assert not can_log_in(server, "erin", erin.password, "kept")
    with connect(server, server.engine.admin_user, server.admin_password, "kept") as conn:
        assert conn.execute("SELECT x FROM erins").fetchone() == (7,)
    accounts.delete_user("frank")
    with pytest.raises(NotFound):
        accounts.delete_user("frank", "10.0.0.1")


def test_the_admin_and_root_are_invisible(server: Server, accounts: PostgresqlAccounts) -> None:
    admin = server.engine.admin_user
    assert accounts.get_user(admin) is None
    for call in (
        lambda: accounts.update_user(admin, new_password=Secret("x")),
        lambda: accounts.delete_user(admin),
        lambda: accounts.grant(admin, "%", ["app"]),
        lambda: accounts.revoke(admin, "%", "app"),
        lambda: accounts.delete_user("root"),
        lambda: accounts.delete_user("pg_monitor"),
    ):
        with pytest.raises(NotFound):
            call()
    assert can_log_in(server, admin, server.admin_password)
    for name in (admin, "root", "pg_signal_backend"):
        with pytest.raises(BadRequest) as caught:
            server.engine.validate_users([UserSpec(name, Secret("pw"))])
        assert caught.value.field == "users[0].name"
        with pytest.raises(BadRequest):
            accounts.create_users([UserSpec(name, Secret("pw"))])


def test_validation_names_the_field(engine: PostgresqlEngine) -> None:
    cases = [
        ([UserSpec("ok", Secret("pw"), host="10.0.0.1")], "users[0].host"),
        ([UserSpec("ok", Secret(""))], "users[0].password"),
        ([UserSpec("ok", Secret("pw")), UserSpec("x" * 64, Secret("pw"))], "users[1].name"),
        ([UserSpec("ok", Secret("pw"), databases=("template0",))], "users[0].databases"),
        ([UserSpec("ok", Secret("pw")), UserSpec("ok", Secret("pw"))], "users[1].name"),
    ]
    for users, field in cases:
        with pytest.raises(BadRequest) as caught:
            engine.validate_users(users)
        assert caught.value.field == field
    with pytest.raises(BadRequest) as caught:
        engine.validate_databases([DatabaseSpec("ok"), DatabaseSpec("pg_x")], field="databases")
    assert caught.value.field == "databases[1].name"
    engine.validate_databases([DatabaseSpec(WEIRD_DB), DatabaseSpec(UNICODE_DB)])
    engine.validate_users([UserSpec(WEIRD_USER, Secret(WEIRD_PASSWORD), databases=(WEIRD_DB,))])


def test_root_enable_gives_the_managed_service_root_and_disable_takes_it_away(
    server: Server, accounts: PostgresqlAccounts
) -> None:
    assert not accounts.root_enabled()
    accounts.disable_root()  # nothing to disable: no error
    password = secret("r00t-" + WEIRD_PASSWORD)
    assert accounts.enable_root(password) == "root"
    assert accounts.root_enabled()
    assert "root" not in {user.name for user in accounts.list_users()}
    with connect(server, "root", password) as held:
        # The managed-service root, not a superuser: test_postgresql_root.py checks every privilege.
        assert held.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
        again = secret("another-root-pass")
        assert accounts.enable_root(again) == "root"  # a reset: the new password only
        assert not can_log_in(server, "root", password)
        assert can_log_in(server, "root", again)
        accounts.disable_root()
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
    assert not accounts.root_enabled()
    assert not can_log_in(server, "root", again)
    accounts.disable_root()
    assert accounts.enable_root(password) == "root"  # enable after disable works again
    assert can_log_in(server, "root", password)
    accounts.disable_root()


def test_no_password_reaches_the_server_log(server: Server, accounts: PostgresqlAccounts) -> None:
    # Run last in this module: every password used above is in PASSWORDS.
    text = server.log_text()
    assert "authentication failed" in text  # the log did record the wrong-password attempts
    for password in [*PASSWORDS, server.admin_password.reveal()]:
        assert password not in text

"""The PostgreSQL engine against a real PostgreSQL 15 server run by the harness in conftest.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from pg_harness import OsUser, Server, free_address, make_placement, running_server
from psycopg import sql

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.postgresql import PostgresqlEngine, scram
from reddwarf.engines.postgresql.admin import MAINTENANCE_DB

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

WEIRD_DB = 'we"ird; DROP DATABASE postgres; --'
UNICODE_DB = "данные ✓"
LATIN_DB = "latin one"
WEIRD_USER = 'o\'brien "q"; x'
ALICE = UserSpec("alice", Secret("alice-pa55 with spaces"), databases=("app", WEIRD_DB))
BOB = UserSpec(WEIRD_USER, Secret("b0b'; DROP ROLE alice; --"), databases=("app",))
CAROL = UserSpec("ユーザー", Secret("p\u00e4ssw\u00f6rd-\ufb01-\u212b"), databases=(UNICODE_DB,))
SPEC = InstanceSpec(
    name="it",
    flavor_id="1",
    volume_size_gb=1,
    datastore="postgresql",
    datastore_version="15",
    databases=(
        DatabaseSpec("app"),
        DatabaseSpec(WEIRD_DB),
        DatabaseSpec(UNICODE_DB, "utf-8", "C"),
        DatabaseSpec(LATIN_DB, "latin1"),
    ),
    users=(ALICE, BOB, CAROL),
)
ALL_PASSWORDS = [u.password.reveal() for u in SPEC.users]


@pytest.fixture(scope="module")
def server(engine: PostgresqlEngine, pg15: DatastoreVersion, os_user: OsUser, module_scratch: Path) -> Iterator[Server]:
    engine.validate_spec(SPEC)
    with running_server(engine, pg15, os_user, module_scratch / "main", SPEC) as running:
        engine.bootstrap(SPEC, running.placement, running.admin_password)
        yield running


def connect(server: Server, user: str, password: Secret, dbname: str = MAINTENANCE_DB) -> psycopg.Connection:
    return psycopg.connect(
        host=server.placement.address,
        port=server.placement.port,
        user=user,
        password=password.reveal(),
        dbname=dbname,
        autocommit=True,
        connect_timeout=5,
    )


def admin(server: Server, dbname: str = MAINTENANCE_DB) -> psycopg.Connection:
    return connect(server, server.engine.admin_user, server.admin_password, dbname)


def scalar(conn: psycopg.Connection, query: str | sql.Composable, params: tuple[object, ...] = ()) -> object:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def test_data_directory_has_checksums(server: Server) -> None:
    with admin(server) as conn:
        assert scalar(conn, "SHOW data_checksums") == "on"
        assert scalar(conn, "SHOW password_encryption") == "scram-sha-256"


def test_admin_is_a_superuser_and_the_secret_init_file_is_gone(server: Server) -> None:
    with admin(server) as conn:
        assert scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is True
    assert all(not Path(f.path).exists() for f in server.workload.init_files)


def test_password_is_required_and_nothing_is_trusted(server: Server) -> None:
    wrong = Secret("not-the-password")
    assert not server.engine.probe(server.placement, server.engine.admin_user, wrong)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(server, server.engine.admin_user, wrong)
    with admin(server) as conn:
        rules = conn.execute("SELECT type, database, user_name, auth_method, options FROM pg_hba_file_rules").fetchall()
        assert scalar(conn, "SHOW hba_file") == str(Path(server.placement.config_dir) / "pg_hba.conf")
    # Passwords everywhere; the one exception admits, over the unix socket, only the replication role (to stream,
    # and a former primary's pg_rewind to the `postgres` database) and only the OS users the ident map names
    # (the members of the instance's replication set: none here).
    assert {rule[3] for rule in rules if rule[3] != "peer"} == {"scram-sha-256"}
    assert [rule for rule in rules if rule[3] == "peer"] == [
        ("local", ["replication"], ["reddwarf_replicator"], "peer", ["map=reddwarf_members"]),
        ("local", ["postgres"], ["reddwarf_replicator"], "peer", ["map=reddwarf_members"]),
    ]
    for hba in (Path(server.placement.config_dir) / "pg_hba.conf", Path(server.placement.data_dir) / "pg_hba.conf"):
        rules = [line for line in hba.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert rules and all("trust" not in rule for rule in rules)


def test_server_listens_on_the_placement_address_only(server: Server) -> None:
    with admin(server) as conn:
        assert scalar(conn, "SHOW listen_addresses") == server.placement.address
        assert scalar(conn, "SHOW unix_socket_directories") == server.placement.socket_dir
    other = free_address(exclude=frozenset({server.placement.address}))
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):  # a wildcard listener would answer
        sock.settimeout(2)
        sock.connect((other, server.placement.port))


def test_bootstrap_creates_databases_and_login_roles(server: Server) -> None:
    with admin(server) as conn:
        databases = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        assert {"app", WEIRD_DB, UNICODE_DB, LATIN_DB} <= databases
        assert "postgres" in databases  # not dropped by the injection attempt in a name
        assert (
            scalar(conn, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = %s", (LATIN_DB,))
            == "LATIN1"
        )
        assert scalar(conn, "SELECT datcollate FROM pg_database WHERE datname = %s", (UNICODE_DB,)) == "C"
        roles = conn.execute(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = ANY(%s)",
            ([u.name for u in SPEC.users],),
        ).fetchall()
    assert sorted(roles) == sorted((u.name, True, False, False, False) for u in SPEC.users)


@pytest.mark.parametrize("user", SPEC.users, ids=lambda u: u.name)
def test_tenant_users_log_in_to_their_databases(server: Server, user: UserSpec) -> None:
    for dbname in user.databases:
        assert server.engine.probe(server.placement, user.name, user.password, dbname=dbname)


def test_tenant_users_cannot_log_in_to_other_databases(server: Server) -> None:
    assert not server.engine.probe(server.placement, BOB.name, BOB.password, dbname=WEIRD_DB)
    assert not server.engine.probe(server.placement, CAROL.name, CAROL.password, dbname="app")
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect(server, ALICE.name, ALICE.password, UNICODE_DB)


def test_tenant_users_share_their_database_public_schema(server: Server) -> None:
    with connect(server, ALICE.name, ALICE.password, "app") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS shared_notes (id serial PRIMARY KEY, body text)")
        conn.execute("INSERT INTO shared_notes (body) VALUES ('from alice')")
    with connect(server, BOB.name, BOB.password, "app") as conn:
        conn.execute("INSERT INTO shared_notes (body) VALUES ('from bob')")
        assert scalar(conn, "SELECT count(*) FROM shared_notes") >= 2  # type: ignore[operator]


def _state(server: Server) -> dict[str, object]:
    with admin(server) as conn:
        state: dict[str, object] = {
            "databases": conn.execute("SELECT datname, datacl::text FROM pg_database ORDER BY 1").fetchall(),
            "roles": conn.execute(
                "SELECT rolname, rolpassword, rolcanlogin, rolsuper FROM pg_authid ORDER BY 1"
            ).fetchall(),
        }
    for database in SPEC.databases:
        with admin(server, database.name) as conn:
            state[database.name] = (
                conn.execute("SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'").fetchall(),
                conn.execute(
                    "SELECT defaclrole::regrole::text, defaclobjtype, defaclacl::text FROM pg_default_acl ORDER BY 1, 2"
                ).fetchall(),
            )
    return state


def test_bootstrap_twice_changes_nothing(server: Server) -> None:
    before = _state(server)
    server.engine.bootstrap(SPEC, server.placement, server.admin_password)
    assert _state(server) == before


def test_postgresql_accepts_our_verifier_and_we_read_its_own(server: Server) -> None:
    # Ours: bootstrap stored a client-side verifier and the user logged in with the password (above);
    # here the stored verifier is checked to be exactly the SCRAM-SHA-256 format PostgreSQL made its own.
    with admin(server) as conn:
        stored = scalar(conn, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (CAROL.name,))
        assert isinstance(stored, str) and scram.matches(CAROL.password.reveal(), stored)
        # Theirs: a verifier PostgreSQL computed itself matches ours for the same password.
        conn.execute("CREATE ROLE scram_probe LOGIN PASSWORD 'their-own-verifier'")
        try:
            theirs = scalar(conn, "SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_probe'")
            assert isinstance(theirs, str) and scram.matches("their-own-verifier", theirs)
            assert not scram.matches("another", theirs)
        finally:
            conn.execute("DROP ROLE scram_probe")


def test_changed_password_is_reset_by_a_new_bootstrap(server: Server) -> None:
    dave = UserSpec("dave", Secret("dave-first-pass"), databases=("app",))
    server.engine.bootstrap(replace(SPEC, users=(dave,)), server.placement, server.admin_password)
    renewed = UserSpec("dave", Secret("dave-second-pass"), databases=("app",))
    server.engine.bootstrap(replace(SPEC, users=(renewed,)), server.placement, server.admin_password)
    assert server.engine.probe(server.placement, "dave", renewed.password, dbname="app")
    assert not server.engine.probe(server.placement, "dave", dave.password, dbname="app")
    ALL_PASSWORDS.extend([dave.password.reveal(), renewed.password.reveal()])


def test_a_locale_the_server_lacks_is_a_permanent_error_without_secrets(server: Server) -> None:
    spec = replace(SPEC, databases=(DatabaseSpec("nolocale", collate="xx_YY.UTF-8"),), users=())
    server.engine.validate_spec(spec)
    with pytest.raises(PermanentError) as caught:
        server.engine.bootstrap(spec, server.placement, server.admin_password)
    assert "nolocale" in caught.value.message
    assert server.admin_password.reveal() not in caught.value.message


def test_an_unreachable_server_is_a_temporary_error(server: Server, os_user: OsUser, module_scratch: Path) -> None:
    nowhere = make_placement(module_scratch, os_user, free_address())
    with pytest.raises(TemporaryError):
        server.engine.bootstrap(SPEC, nowhere, server.admin_password)
    assert not server.engine.probe(nowhere, server.engine.admin_user, server.admin_password, timeout=1.0)


def test_no_password_reaches_the_server_log(server: Server) -> None:
    # Provoke what usually logs statements: failed logins and a failing statement carrying a password.
    assert not server.engine.probe(server.placement, ALICE.name, Secret("wrong-password"), dbname="app")
    with admin(server) as conn, pytest.raises(psycopg.errors.SyntaxError):
        conn.execute("ALTER ROLE alice WITH PASSWORD 'leak-me-if-you-can' BROKEN")
    log = server.log_text()
    assert "password authentication failed" in log  # the log is the one the server writes
    for secret in [*ALL_PASSWORDS, server.admin_password.reveal(), "leak-me-if-you-can"]:
        assert secret not in log
    assert "SCRAM-SHA-256$" not in log

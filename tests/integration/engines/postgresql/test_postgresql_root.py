"""A tenant's `root` on PostgreSQL 15 and 18 is the managed-service root: every row of
docs/root-privileges.md, and every escape to the host or over Reddwarf's admin tried for real and refused.

Also the admin's own hygiene (search_path, qualified operators, where a deleted user's objects go) with
traps a tenant plants, and the server's address, port, socket directory and hba file pinned on its
command line, out of `ALTER SYSTEM`'s reach.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_harness import OsUser, Server, running_server

from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.postgresql import PostgresqlEngine, PostgresqlSettings
from reddwarf.engines.postgresql.accounts import PostgresqlAccounts

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

HOST_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files", "pg_read_all_data")
ROOT_PASSWORD = Secret("r00t-" + secrets.token_urlsafe(12))
ALICE = UserSpec("alice", Secret("alice-" + secrets.token_urlsafe(8)), databases=("shop",))


@pytest.fixture(scope="module", params=["15", "18"])
def server(
    request: pytest.FixtureRequest, engine: PostgresqlEngine, os_user: OsUser, module_scratch: Path
) -> Iterator[Server]:
    major = str(request.param)
    found = [v for v in engine.versions() if v.name == major]
    if not found:
        pytest.fail(f"PostgreSQL {major} is not installed (`reddwarf engines install postgresql@{major}`)")
    spec = InstanceSpec(
        name="root",
        flavor_id="1",
        volume_size_gb=1,
        datastore="postgresql",
        datastore_version=major,
        databases=(DatabaseSpec("shop"), DatabaseSpec("empty")),
        users=(ALICE,),
    )
    with running_server(engine, found[0], os_user, module_scratch / f"root{major}", spec) as running:
        running.engine.bootstrap(spec, running.placement, running.admin_password)
        with connect(running, ALICE.name, ALICE.password, "shop") as conn:
            conn.execute("CREATE TABLE orders (id int)")
            conn.execute("INSERT INTO orders VALUES (1)")
        yield running


@pytest.fixture(scope="module")
def accounts(server: Server) -> PostgresqlAccounts:
    found = server.engine.accounts(server.placement, server.admin_password)
    assert found.enable_root(ROOT_PASSWORD) == "root"
    return found


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
        sslmode="disable",
    )


def as_root(server: Server, dbname: str = "postgres") -> psycopg.Connection:
    return connect(server, "root", ROOT_PASSWORD, dbname)


def as_admin(server: Server, dbname: str = "postgres") -> psycopg.Connection:
    return connect(server, server.engine.admin_user, server.admin_password, dbname)


def major(server: Server) -> int:
    with as_admin(server) as conn:
        return conn.info.server_version // 10000


def refused(conn: psycopg.Connection, statement: str) -> bool:
    """True when PostgreSQL refuses `statement` for lack of privilege (anything else propagates)."""
    try:
        conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def privileges(server: Server) -> set[tuple[object, ...]]:
    """Every role's attributes and every membership: what must not grow behind Reddwarf's back."""
    with as_admin(server) as conn:
        roles = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles"
        ).fetchall()
        members = conn.execute(
            "SELECT 'member', r.rolname, m.rolname, a.admin_option FROM pg_auth_members a"
            " JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member"
        ).fetchall()
    return {tuple(row) for row in [*roles, *members]}


# -- point 3: the rows of docs/root-privileges.md ---------------------------------------------------


def test_root_attributes_and_roles_are_those_of_the_table(server: Server, accounts: PostgresqlAccounts) -> None:
    with as_root(server) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, True, major(server) >= 16, False, False, True)
        for role in ("pg_monitor", "pg_signal_backend", "pg_read_all_settings", "pg_read_all_stats"):
            assert conn.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (role,)).fetchone() == (True,)
        for role in HOST_ROLES:
            assert conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,)).fetchone() == (False,)


def test_root_passes_troves_root_checks(server: Server, accounts: PostgresqlAccounts) -> None:
    name = "rootmade_" + secrets.token_hex(3)
    with as_root(server) as conn:
        assert conn.execute("SELECT count(*) > 0 FROM pg_settings").fetchone() == (True,)
        assert conn.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'shop'").fetchone() == (1,)
        conn.execute(f"CREATE DATABASE {name}")
        conn.execute("CREATE TABLE IF NOT EXISTS root_notes (v text)")  # in postgres' public schema
    with as_root(server, name) as conn:
        conn.execute("CREATE TABLE t (v int)")
    with as_root(server) as conn:
        conn.execute(f"DROP DATABASE {name}")


def test_root_reaches_all_tenant_data_and_schema(server: Server, accounts: PostgresqlAccounts) -> None:
    with as_root(server, "shop") as conn:
        assert conn.execute("SELECT id FROM orders").fetchone() == (1,)
        conn.execute("INSERT INTO orders VALUES (2)")
        conn.execute("ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text")  # as a member of alice, its owner
        conn.execute("CREATE TABLE IF NOT EXISTS root_table (v int)")
        conn.execute("CREATE SCHEMA IF NOT EXISTS reports")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")  # a trusted extension
    with as_root(server, "empty") as conn:  # a database no user was granted
        conn.execute("CREATE TABLE IF NOT EXISTS t (v int)")
    # A user and a database made after root was enabled are reached too (the control plane keeps it in step).
    accounts.create_databases([DatabaseSpec("later")])
    later = UserSpec("bob", Secret("bob-" + secrets.token_urlsafe(8)), databases=("later",))
    accounts.create_users([later])
    with connect(server, "bob", later.password, "later") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bobs (v int)")
    with as_root(server, "later") as conn:
        conn.execute("INSERT INTO bobs VALUES (1)")
        conn.execute("CREATE INDEX IF NOT EXISTS bobs_v ON bobs (v)")


# -- point 3: escapes to the host, and power over the admin ------------------------------------------


def test_root_cannot_reach_the_host(server: Server, accounts: PostgresqlAccounts, module_scratch: Path) -> None:
    elsewhere = module_scratch / ("elsewhere-" + secrets.token_hex(4))
    elsewhere.mkdir()
    elsewhere.chmod(0o777)  # writable by the instance's OS user: only PostgreSQL's own rules may stop it
    planted = elsewhere / "planted"
    with as_root(server, "shop") as conn:
        for statement in (
            f"COPY (SELECT 1) TO PROGRAM 'touch {planted}'",
            f"COPY orders FROM PROGRAM 'touch {planted}'",
            f"COPY (SELECT 1) TO '{planted}'",
            "COPY orders FROM '/etc/hostname'",
            "SELECT pg_read_file('/etc/passwd')",
            f"SELECT pg_read_binary_file('{server.placement.config_dir}/pg_hba.conf')",
            "SELECT pg_ls_dir('/')",
            "SELECT lo_import('/etc/passwd')",
            "ALTER SYSTEM SET shared_preload_libraries = 'x'",
            "SET session_preload_libraries = 'x'",
            "LOAD '/usr/lib/x86_64-linux-gnu/libc.so.6'",
            "CREATE FUNCTION sh() RETURNS int LANGUAGE c AS '/usr/lib/x86_64-linux-gnu/libc.so.6', 'system'",
            "CREATE EXTENSION file_fdw",  # untrusted: reads server files
            "CREATE EXTENSION dblink",  # untrusted: connections from the server
            "CREATE EXTENSION postgres_fdw",
            "ALTER ROLE root SUPERUSER",
            "ALTER ROLE root REPLICATION",
            *(f"GRANT {role} TO root" for role in HOST_ROLES),
        ):
            assert refused(conn, statement), statement
        if major(server) < 16:
            assert refused(conn, "CREATE ROLE helper")  # a 15 CREATEROLE role could grant itself the above
        else:
            conn.execute("CREATE ROLE helper_" + secrets.token_hex(3))  # 16+: CREATEROLE reaches its own roles only
            assert refused(conn, "CREATE ROLE su SUPERUSER")
    assert list(elsewhere.iterdir()) == []


def test_root_has_no_power_over_the_admin(server: Server, accounts: PostgresqlAccounts) -> None:
    admin = server.engine.admin_user
    before = privileges(server)
    with as_admin(server) as held, as_root(server) as conn:
        pid = held.info.backend_pid
        for statement in (
            f"ALTER ROLE {admin} PASSWORD 'x'",
            f"ALTER ROLE {admin} NOLOGIN",
            f"ALTER ROLE {admin} CONNECTION LIMIT 0",
            f"ALTER ROLE {admin} VALID UNTIL '2000-01-01'",
            f"ALTER ROLE {admin} RENAME TO gone",
            f"ALTER ROLE {admin} SET search_path = public",
            f"DROP ROLE {admin}",
            f"GRANT {admin} TO root",
            f"REASSIGN OWNED BY {admin} TO root",
            "ALTER DATABASE postgres CONNECTION LIMIT 0",
        ):
            assert refused(conn, statement), statement
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        assert held.execute("SELECT 1").fetchone() == (1,)  # its session survived
    assert server.engine.probe(server.placement, admin, server.admin_password)
    assert {row for row in privileges(server) if row[:2] != ("member", "root")} == {
        row for row in before if row[:2] != ("member", "root")
    }


# -- point 5: no tenant moves the server ------------------------------------------------------------


def test_no_tenant_can_move_the_server(server: Server, accounts: PostgresqlAccounts) -> None:
    moves = (
        "ALTER SYSTEM SET listen_addresses = '*'",
        "ALTER SYSTEM SET port = 5999",
        "ALTER SYSTEM SET hba_file = '/tmp/hba'",
        "ALTER SYSTEM SET unix_socket_directories = '/tmp'",
        "ALTER SYSTEM SET archive_mode = on",
        "ALTER SYSTEM SET archive_command = 'sh -c id'",
        "ALTER SYSTEM SET ssl = on",
    )
    for who, password in (("root", ROOT_PASSWORD), (ALICE.name, ALICE.password)):
        with connect(server, who, password, "shop") as conn:
            for statement in moves:
                assert refused(conn, statement), (who, statement)


# -- point 4: traps a tenant plants for the admin ----------------------------------------------------


def test_traps_in_public_and_a_deleted_owner_give_no_role_a_privilege(
    server: Server, accounts: PostgresqlAccounts
) -> None:
    accounts.create_databases([DatabaseSpec("trap")])
    mallory = UserSpec("mallory", Secret("mallory-" + secrets.token_urlsafe(8)), databases=("trap",))
    owner = UserSpec("owner", Secret("owner-" + secrets.token_urlsafe(8)), databases=("trap",))
    victim = UserSpec("victim", Secret("victim-" + secrets.token_urlsafe(8)), databases=("trap",))
    accounts.create_users([mallory, owner, victim])
    before = privileges(server)
    with connect(server, "mallory", mallory.password, "trap") as conn:
        # An operator an unqualified `oid = regnamespace` would pick over pg_catalog's: it runs as its caller.
        conn.execute(
            "CREATE FUNCTION public.trap_eq(oid, regnamespace) RETURNS boolean LANGUAGE plpgsql AS $$"
            " BEGIN EXECUTE 'ALTER ROLE mallory SUPERUSER'; RETURN $1 OPERATOR(pg_catalog.=) $2::oid;"
            " EXCEPTION WHEN OTHERS THEN RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $$"
        )
        conn.execute("CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regnamespace, FUNCTION = public.trap_eq)")
    with connect(server, "owner", owner.password, "trap") as conn:
        # Harmless while its owner is a tenant; a superuser's power if the owner became the admin.
        conn.execute(
            "CREATE FUNCTION public.escalate() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$"
            " BEGIN EXECUTE 'ALTER ROLE victim SUPERUSER'; END $$"
        )
        conn.execute("GRANT EXECUTE ON FUNCTION public.escalate() TO PUBLIC")
    accounts.revoke("victim", "%", "trap")  # runs statements in database trap
    accounts.grant("victim", "%", ["trap"])
    assert privileges(server) == before  # the operator in public was not picked by the admin
    accounts.delete_user("owner")
    with connect(server, "victim", victim.password, "trap") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT public.escalate()")
        owned = conn.execute("SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'escalate'").fetchone()
        assert owned == ("reddwarf_orphans",)
    after = privileges(server)
    gained = {row for row in after - before if "owner" not in row}
    assert gained == set(), gained
    with as_admin(server) as conn:
        supers = conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1").fetchall()
        orphans = conn.execute(
            "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'reddwarf_orphans'"
        ).fetchone()
    assert supers == [(server.engine.admin_user,)]
    assert orphans == (False, False)
    with as_root(server, "trap") as conn:  # root, a member of reddwarf_orphans, can clean up
        conn.execute("DROP FUNCTION public.escalate()")


def test_root_superuser_setting_gives_a_real_superuser(server: Server, accounts: PostgresqlAccounts) -> None:
    vm_like = PostgresqlEngine(PostgresqlSettings(root_superuser=True)).accounts(
        server.placement, server.admin_password
    )
    try:
        vm_like.enable_root(ROOT_PASSWORD)
        with as_root(server) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'root'").fetchone() == (True,)
    finally:
        accounts.enable_root(ROOT_PASSWORD)
    with as_root(server) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'root'").fetchone() == (False,)


def test_roles_left_by_a_superuser_root_hand_none_of_their_powers_back(
    server: Server, accounts: PostgresqlAccounts
) -> None:
    """An instance whose root was a real superuser (the operator setting, or an older Reddwarf) may hold
    roles with host powers that root made then; enabling the managed root again must not make root their
    member (review finding: membership handed COPY ... TO PROGRAM back)."""
    leftovers = ("leftover_shell", "leftover_maker", "leftover_inner", "leftover_outer")
    vm_like = PostgresqlEngine(PostgresqlSettings(root_superuser=True)).accounts(
        server.placement, server.admin_password
    )
    try:
        vm_like.enable_root(ROOT_PASSWORD)
        with as_root(server) as conn:
            conn.execute("CREATE ROLE leftover_shell LOGIN IN ROLE pg_execute_server_program")
            conn.execute("CREATE ROLE leftover_maker LOGIN CREATEROLE")
            conn.execute("CREATE ROLE leftover_inner NOLOGIN IN ROLE pg_read_server_files")
            conn.execute("CREATE ROLE leftover_outer LOGIN IN ROLE leftover_inner")
    finally:
        accounts.enable_root(ROOT_PASSWORD)
    try:
        with as_root(server) as conn:
            for role in leftovers:
                assert refused(conn, f"SET ROLE {role}"), role
            assert refused(conn, "COPY (SELECT 1) TO PROGRAM 'true'")
    finally:
        with as_admin(server) as conn:
            for role in leftovers:
                conn.execute(f"DROP ROLE IF EXISTS {role}")


# Last: it restarts the server.
def test_the_command_line_pins_address_port_socket_and_hba(server: Server, accounts: PostgresqlAccounts) -> None:
    # Even a postgresql.auto.conf that says otherwise (written here by the superuser admin) moves nothing.
    with as_admin(server) as conn:
        conn.execute("ALTER SYSTEM SET listen_addresses = '127.0.0.1'")
        conn.execute("ALTER SYSTEM SET port = 5999")
        conn.execute("ALTER SYSTEM SET hba_file = '/nonexistent/pg_hba.conf'")
        conn.execute("ALTER SYSTEM SET unix_socket_directories = '/tmp'")
    try:
        server.restart()
        with as_admin(server) as conn:
            rows = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN"
                    " ('listen_addresses', 'port', 'hba_file', 'unix_socket_directories')"
                ).fetchall()
            )
        assert rows == {
            "listen_addresses": server.placement.address,
            "port": str(server.placement.port),
            "hba_file": f"{server.placement.config_dir}/pg_hba.conf",
            "unix_socket_directories": server.placement.socket_dir,
        }
    finally:
        with as_admin(server) as conn:
            conn.execute("ALTER SYSTEM RESET ALL")

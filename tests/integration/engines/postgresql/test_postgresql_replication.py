"""The PostgreSQL replication source against a real PostgreSQL 15 server (the harness in conftest.py):
`blocker()` names the restart a server started before replication was supported needs, `prepare_source()`
makes the replication role (no password, REPLICATION, nothing else), one slot per replica and drops a former
member's, and has the server load the ident map the runtime rewrote (without a restart)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_harness import FLAVOR, OsUser, Server, free_address, make_placement, running_server

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.replication import Topology, slot_name
from reddwarf.domain.secret import Secret
from reddwarf.engines.postgresql import PostgresqlEngine

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

SPEC = InstanceSpec(name="src", flavor_id="1", volume_size_gb=1, datastore="postgresql", datastore_version="15")
FIRST, SECOND = slot_name("0" * 31 + "1"), slot_name("0" * 31 + "2")


@pytest.fixture(scope="module")
def server(engine: PostgresqlEngine, pg15: DatastoreVersion, os_user: OsUser, module_scratch: Path) -> Iterator[Server]:
    with running_server(engine, pg15, os_user, module_scratch / "source", SPEC) as running:
        yield running


def _admin(server: Server) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=server.placement.address, port=server.placement.port,
                           user=server.engine.admin_user, password=server.admin_password.reveal(),
                           dbname="postgres", autocommit=True, connect_timeout=5)


def _slots(server: Server) -> list[str]:
    with _admin(server) as conn:
        return [str(r[0]) for r in conn.execute("select slot_name from pg_replication_slots order by 1")]


def test_a_current_server_can_be_a_source(engine: PostgresqlEngine, pg15: DatastoreVersion, server: Server) -> None:
    assert engine.replication(pg15).blocker(server.placement, server.admin_password) is None


def test_slots_follow_the_members_and_the_role_can_do_nothing_but_replicate(
    engine: PostgresqlEngine, pg15: DatastoreVersion, server: Server
) -> None:
    replication = engine.replication(pg15)
    with _admin(server) as conn:
        loaded = conn.execute("select pg_conf_load_time()").fetchone()
    # The runtime rewrote the ident map for a member (what `Runtime.refresh` does); prepare_source loads it.
    peer = dataclasses.replace(server.placement, os_user="rd-member000001")
    workload = engine.workload(SPEC, pg15, FLAVOR, server.placement, server.admin_password,
                               Topology(set_id="s", peers=(peer,)))
    ident = next(f for f in workload.files if f.path.endswith("pg_ident.conf"))
    server._write(ident)
    replication.prepare_source(server.placement, server.admin_password, (FIRST, SECOND))
    assert _slots(server) == [FIRST, SECOND]
    with _admin(server) as conn:
        row = conn.execute("select pg_conf_load_time() > %s, (select count(*) from pg_ident_file_mappings"
                           " where sys_name = 'rd-member000001' and pg_username = 'reddwarf_replicator')",
                           (loaded[0] if loaded else None,)).fetchone()
        assert row == (True, 1)
        role = conn.execute("select rolcanlogin, rolreplication, rolsuper, rolcreatedb, rolcreaterole, rolpassword"
                            " from pg_authid where rolname = 'reddwarf_replicator'").fetchone()
        assert role == (True, True, False, False, False, None)
        # The slot reserves WAL from the moment it is made (a replica seeding from it loses nothing).
        assert conn.execute(f"select restart_lsn is not null from pg_replication_slots where slot_name = '{FIRST}'"
                            ).fetchone() == (True,)
    replication.prepare_source(server.placement, server.admin_password, (SECOND,))  # FIRST's replica left
    assert _slots(server) == [SECOND]
    replication.prepare_source(server.placement, server.admin_password, (SECOND,))  # idempotent
    assert _slots(server) == [SECOND]
    replication.prepare_source(server.placement, server.admin_password, ())
    assert _slots(server) == []


def test_a_server_started_before_replication_was_supported_needs_a_restart_first(
    engine: PostgresqlEngine, pg15: DatastoreVersion, os_user: OsUser, module_scratch: Path
) -> None:
    root = module_scratch / "older"
    root.mkdir(mode=0o755)
    placement = make_placement(root, os_user, free_address())
    admin = Secret("older-admin-pa55")
    workload = engine.workload(SPEC, pg15, FLAVOR, placement, admin)
    # What Reddwarf pinned before: the socket for its owner only.
    argv = tuple("unix_socket_permissions=0700" if a.startswith("unix_socket_permissions=") else a
                 for a in workload.server.argv)
    older = Server(engine, placement, dataclasses.replace(workload, server=dataclasses.replace(
        workload.server, argv=argv)), admin, os_user)
    older.prepare()
    older.initialise()
    try:
        older.start()
        older.wait_ready()
        reason = engine.replication(pg15).blocker(placement, admin)
        assert reason is not None and "restart" in reason
    finally:
        older.stop()


def _login(server: Server, user: str, password: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=server.placement.address, port=server.placement.port, user=user,
                           password=password, dbname="postgres", autocommit=True, connect_timeout=5)


def _rootish(server: Server) -> psycopg.Connection[tuple[object, ...]]:
    return _login(server, "rootish", "rootish-pw-123")


def test_a_replication_role_a_tenant_made_first_is_taken_from_it(
    engine: PostgresqlEngine, os_user: OsUser, module_scratch: Path
) -> None:
    """From PostgreSQL 16 root has CREATEROLE: had it made `reddwarf_replicator` before the first replica, it
    would administer it (set it a password and stream as it, or drop it), and could have it own a SECURITY
    DEFINER function that reads the data directory (`pg_authid`) with the file functions pg_rewind needs once
    Reddwarf grants them, keep a session acting as it, or give it settings. Reddwarf takes all of it back."""
    version = next((v for v in engine.versions() if v.name == "18"), None)
    if version is None:
        pytest.fail("PostgreSQL 18 is not installed (`reddwarf engines install postgresql@18`)")
    spec = dataclasses.replace(SPEC, datastore_version="18")
    with running_server(engine, version, os_user, module_scratch / "v18", spec) as server:
        with _admin(server) as conn:
            conn.execute("CREATE ROLE rootish LOGIN CREATEROLE PASSWORD 'rootish-pw-123'")
            conn.execute("GRANT CREATE ON DATABASE postgres TO rootish")  # as root has
        with _rootish(server) as rootish:
            rootish.execute("CREATE ROLE reddwarf_replicator LOGIN")
            rootish.execute("CREATE ROLE helper")
            rootish.execute("GRANT reddwarf_replicator TO helper")
            rootish.execute("GRANT reddwarf_replicator TO rootish WITH SET TRUE")
            rootish.execute("ALTER ROLE reddwarf_replicator SET statement_timeout = '1ms'")
            rootish.execute("CREATE SCHEMA trap AUTHORIZATION reddwarf_replicator")
            rootish.execute("SET ROLE reddwarf_replicator")
            rootish.execute("CREATE FUNCTION trap.peek() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS"
                            " $$ SELECT pg_catalog.length(pg_catalog.pg_read_binary_file('global/pg_control')) $$")
            # A chain of memberships, and a password to log in as the role itself.
            rootish.execute("RESET ROLE")
            rootish.execute("CREATE ROLE chain_a")
            rootish.execute("CREATE ROLE chain_b LOGIN PASSWORD 'chain-b-pw-123'")
            rootish.execute("GRANT reddwarf_replicator TO chain_a")
            rootish.execute("GRANT chain_a TO chain_b")
            rootish.execute("ALTER ROLE reddwarf_replicator PASSWORD 'replicator-pw-123'")
            rootish.execute("ALTER DEFAULT PRIVILEGES FOR ROLE reddwarf_replicator GRANT SELECT ON TABLES TO PUBLIC")
        # Sessions acting as the role before Reddwarf takes it: SET ROLE directly, through a chain, and a login.
        held = [_rootish(server), _login(server, "chain_b", "chain-b-pw-123"),
                _login(server, "reddwarf_replicator", "replicator-pw-123")]
        held[0].execute("SET ROLE reddwarf_replicator")
        held[1].execute("SET ROLE reddwarf_replicator")
        engine.replication(version).prepare_source(server.placement, server.admin_password, ())
        with _admin(server) as conn:
            assert conn.execute(
                "select count(*) from pg_auth_members a join pg_roles r on r.oid in (a.roleid, a.member)"
                " where r.rolname = 'reddwarf_replicator'").fetchone() == (0,)
            assert conn.execute("select count(*) from pg_db_role_setting s join pg_roles r on r.oid = s.setrole"
                                " where r.rolname = 'reddwarf_replicator'").fetchone() == (0,)
            assert conn.execute("select pg_get_userbyid(proowner) from pg_proc where proname = 'peek'"
                                ).fetchone() == ("reddwarf_orphans",)
            # The role itself may now read the files (pg_rewind does), so what a tenant left it must be gone.
            assert conn.execute("select has_function_privilege('reddwarf_replicator',"
                                " 'pg_read_binary_file(text)', 'execute')").fetchone() == (True,)
            assert conn.execute("select rolpassword from pg_authid where rolname = 'reddwarf_replicator'"
                                ).fetchone() == (None,)
            assert conn.execute("select count(*) from pg_default_acl d join pg_roles r on r.oid = d.defaclrole"
                                " where r.rolname = 'reddwarf_replicator'").fetchone() == (0,)
        for session in held:
            with pytest.raises(psycopg.OperationalError):
                session.execute("SELECT pg_catalog.length(pg_catalog.pg_read_binary_file('global/pg_control'))")
            session.close()
        with pytest.raises(psycopg.OperationalError):
            _login(server, "reddwarf_replicator", "replicator-pw-123")
        # Taken back, nobody administers it: a second prepare finds nothing to do and ends no session.
        with _rootish(server) as bystander:
            engine.replication(version).prepare_source(server.placement, server.admin_password, ())
            assert bystander.execute("select 1").fetchone() == (1,)
        with _rootish(server) as again:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                again.execute("SELECT trap.peek()")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                again.execute("ALTER ROLE reddwarf_replicator PASSWORD 'mine-now-123'")

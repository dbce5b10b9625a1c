"""The tenant's `root` on PostgreSQL: the managed-service root of RDS and Cloud SQL, not a host shell.

On a shared host a PostgreSQL superuser is a shell as the instance's OS user (`COPY ... TO PROGRAM`,
`pg_read_file`, `lo_import`, untrusted languages, `ALTER SYSTEM`). So `root` is, by default:

- `LOGIN NOSUPERUSER CREATEDB NOREPLICATION NOBYPASSRLS`, and `CREATEROLE` from PostgreSQL 16 on only
  (a 15 CREATEROLE role can grant itself `pg_execute_server_program`; 16 restricts CREATEROLE to roles the
  creator administers);
- a member of `pg_monitor` (every statistic and setting) and `pg_signal_backend` (cancel or end any
  non-superuser session: the admin's sessions are out of its reach);
- never a member of `pg_execute_server_program`, `pg_read_server_files`, `pg_write_server_files`, nor of
  `pg_read_all_data` (it reads `pg_authid`, i.e. the admin's SCRAM verifier, which lets its holder pass for
  the server to Reddwarf);
- a member (plain membership, no ADMIN OPTION) of every tenant user and of `reddwarf_orphans`: it reaches,
  alters and drops whatever they own, while passwords and the roles themselves stay with the accounts API;
- granted CONNECT, TEMPORARY, CREATE (schemas and trusted extensions; untrusted ones stay superuser-only) on
  every database and USAGE, CREATE on each one's `public` schema, `postgres` included (Trove's root check
  logs in there and creates objects).

The control plane keeps the memberships and database grants in step: `enable_root` grants everything that
exists, and creating a user or a database while `root` exists grants it the new one. The operator setting
`REDDWARF_POSTGRESQL_ROOT_SUPERUSER` (default off) gives the real superuser instead, for runtimes that
isolate each instance like a VM. The table of these privileges is docs/root-privileges.md.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from reddwarf.engines.postgresql.admin import ORPHANS_ROLE, Target, ensure_orphans_role, refusals, session
from reddwarf.engines.postgresql.validation import ROOT_USER

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[TupleRow]

# Roles root is granted; roles that reach the host, which root never holds.
GRANTED_ROLES = ("pg_monitor", "pg_signal_backend")
HOST_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files", "pg_read_all_data")
SAFE_CREATEROLE_VERSION = 160000  # from 16 on, CREATEROLE only reaches roles the creator administers

# Tenant roles root becomes a member of: never one that holds (even through another role) a power root must
# not have: a role left over from a time root was a real superuser (an operator setting, or an older
# Reddwarf) could carry CREATEROLE, REPLICATION, BYPASSRLS or a host role, and membership would hand it on.
_TENANT_ROLES = sql.SQL(
    "SELECT rolname FROM pg_catalog.pg_roles r WHERE NOT rolsuper"
    " AND NOT rolcreaterole AND NOT rolreplication AND NOT rolbypassrls"
    " AND pg_catalog.left(rolname, 3) OPERATOR(pg_catalog.<>) 'pg_'"
    " AND rolname OPERATOR(pg_catalog.<>) ALL({hidden}::pg_catalog.name[]) AND (rolcanlogin"
    " OR rolname OPERATOR(pg_catalog.=) {orphans}::pg_catalog.name)"
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest({host}::pg_catalog.name[]) AS h(name)"
    " WHERE pg_catalog.pg_has_role(r.oid, h.name, 'MEMBER'))"
).format(hidden=sql.Literal([ROOT_USER]), orphans=sql.Literal(ORPHANS_ROLE), host=sql.Literal(list(HOST_ROLES)))
_DATABASES = "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"


def attributes(server_version: int, superuser: bool) -> sql.SQL:
    """Role attributes of `root` on a server of `server_version` (libpq's number, e.g. 150004)."""
    if superuser:
        return sql.SQL("LOGIN SUPERUSER")
    createrole = "CREATEROLE" if server_version >= SAFE_CREATEROLE_VERSION else "NOCREATEROLE"
    return sql.SQL(f"LOGIN NOSUPERUSER CREATEDB {createrole} NOREPLICATION NOBYPASSRLS")


def exists(conn: Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name", (ROOT_USER,)
    ).fetchone()
    return row is not None


def make_root(conn: Connection, verifier: str, superuser: bool) -> list[str]:
    """Create or reset `root` (LOGIN, this SCRAM verifier) with exactly its privileges; returns the databases
    whose grants `grant_database` must still give (they need a session in each database)."""
    root = sql.Identifier(ROOT_USER)
    wanted = attributes(conn.info.server_version, superuser)
    password = sql.Literal(verifier)
    with refusals("enable root"):
        if not exists(conn):
            try:
                conn.execute(sql.SQL("CREATE ROLE {} WITH {} PASSWORD {}").format(root, wanted, password))
                logger.info("created the postgresql role %r", ROOT_USER)
            except psycopg.errors.DuplicateObject:
                logger.info("postgresql role %r was created concurrently", ROOT_USER)
        conn.execute(sql.SQL("ALTER ROLE {} WITH {} PASSWORD {}").format(root, wanted, password))
        conn.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(root))
        for granted in root_memberships(conn):
            if granted.startswith("pg_") and granted not in GRANTED_ROLES:
                conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(granted), root))
        if superuser:
            return []
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.SQL(", ").join(sql.Identifier(r) for r in GRANTED_ROLES), root)
        )
        ensure_orphans_role(conn)
        for (role,) in conn.execute(_TENANT_ROLES).fetchall():
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), root))
        return [str(name) for (name,) in conn.execute(_DATABASES).fetchall()]


def root_memberships(conn: Connection) -> list[str]:
    rows = conn.execute(
        "SELECT r.rolname FROM pg_catalog.pg_auth_members m"
        " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.roleid"
        " JOIN pg_catalog.pg_roles u ON u.oid OPERATOR(pg_catalog.=) m.member"
        " WHERE u.rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
        (ROOT_USER,),
    ).fetchall()
    return [str(name) for (name,) in rows]


def grant_member(conn: Connection, role: str) -> None:
    """Make `root`, if it exists and is not a superuser, a member of tenant role `role`."""
    if exists(conn):
        with refusals(f"let root reach user {role!r}"):
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(ROOT_USER)))


def grant_database(where: Target, database: str) -> None:
    """CONNECT, TEMPORARY, CREATE (schemas, trusted extensions) on `database` and USAGE, CREATE on its `public`
    schema to `root` (in a session there)."""
    with session(replace(where, dbname=database)) as conn:
        if not exists(conn):
            return
        root = sql.Identifier(ROOT_USER)
        with refusals(f"let root reach database {database!r}"):
            db = sql.Identifier(database)
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {} TO {}").format(db, root))
            public = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'public'::pg_catalog.name"
            ).fetchone()
            if public is not None:
                conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(root))

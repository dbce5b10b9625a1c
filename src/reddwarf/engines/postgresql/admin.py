"""SQL spoken to a running PostgreSQL server: readiness probe and bootstrap of databases, users and grants.

Every connection with a credential goes over the instance's own unix socket, checked with `requirepeer` and
limited to SCRAM (`require_auth`); the tenant endpoint over TCP is only pinged, without a credential, once
its listener was found to belong to the instance's OS user (`ping`, see `reddwarf.engines.peer`).

This module and `accounts.py` (which builds on it) are the only ones of the engine that use psycopg.
Identifiers and values reach SQL only through `psycopg.sql.Identifier` / `sql.Literal` (DDL takes no bound
parameters), and a tenant's password only as a client-side SCRAM verifier (`scram.py`), so the plain password
never crosses the wire nor reaches a log.

Every admin session runs with `search_path=pg_catalog, pg_temp` (set in the startup packet, so neither
`ALTER DATABASE ... SET` nor `ALTER ROLE ... SET` can change it) and its SQL names catalogs, functions and
operators with their `pg_catalog.` schema: a tenant may create functions and operators in `public`, and
none of them may ever be picked by a statement Reddwarf's superuser runs.

Errors: a connection that fails (refused, timed out, server starting or shutting down) raises
`TemporaryError`; a statement PostgreSQL refuses because of the tenant's input raises `PermanentError`
with PostgreSQL's primary message, which never holds a secret (we send none).
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines import peer
from reddwarf.engines.postgresql import scram
from reddwarf.engines.postgresql.validation import canonical_encoding

logger = logging.getLogger(__name__)

MAINTENANCE_DB = "postgres"
CLUSTER_ENCODING = "UTF8"
CLUSTER_LOCALE = "C.UTF-8"
# SQLSTATE classes that may pass: connection, insufficient resources, operator intervention,
# transaction rollback (serialization, deadlock), object in use.
_TRANSIENT_CLASSES = frozenset({"08", "53", "57", "40", "55"})
# Admin sessions resolve names in the catalog only (pg_temp named last, so no temporary table shadows a
# catalog; it is never searched for functions or operators), so no tenant object in `public` can stand in
# for a built-in.
ADMIN_SEARCH_PATH = "pg_catalog,pg_temp"
# NOLOGIN, non-superuser owner of what a deleted user owned (`PostgresqlAccounts.delete_user`).
ORPHANS_ROLE = "reddwarf_orphans"
# The role members of a replication set stream from each other as: REPLICATION, no password, admitted only
# over the unix socket to the OS users of the set's members (`peer` with the ident map, `config`).
REPLICATOR = "reddwarf_replicator"


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom to connect: the instance's own unix socket (`socket_dir`, named after `port`),
    whose server must run as `os_user`; never TCP."""

    socket_dir: str
    port: int
    os_user: str
    user: str
    password: Secret
    dbname: str = MAINTENANCE_DB
    timeout: float = 5.0

    @property
    def where(self) -> str:
        return f"{self.socket_dir} (port {self.port})"


def target(
    placement: Placement, user: str, password: Secret, dbname: str | None = None, timeout: float = 5.0
) -> Target:
    return Target(
        placement.socket_dir, placement.port, placement.os_user, user, password, dbname or MAINTENANCE_DB, timeout
    )


def _connect(where: Target) -> psycopg.Connection[TupleRow]:
    # libpq takes whole seconds (at least 2); statement_timeout bounds every statement of the session.
    timeout_ms = max(1, int(where.timeout * 1000))
    return psycopg.connect(
        # The instance's socket directory (0700, its OS user's): libpq checks the connected socket's peer
        # with SO_PEERCRED (`requirepeer`) before it sends anything, and answers nothing but a SCRAM
        # exchange (`require_auth`), so no other server ever sees the password or a usable proof of it.
        host=where.socket_dir,
        port=where.port,
        requirepeer=where.os_user,
        require_auth="scram-sha-256",
        user=where.user,
        password=where.password.reveal(),
        dbname=where.dbname,
        connect_timeout=max(2, math.ceil(where.timeout)),
        autocommit=True,
        application_name="reddwarf",
        # Identifiers are sent as UTF-8 whatever the database's encoding (else a LATIN1 database's session
        # would encode them as latin-1).
        client_encoding="UTF8",
        options=f"-c statement_timeout={timeout_ms} -c search_path={ADMIN_SEARCH_PATH}",
        passfile="/dev/null",
        # No TLS or GSSAPI on a unix socket: asking for them only adds a Kerberos credential lookup.
        sslmode="disable",
        gssencmode="disable",
    )


def probe(where: Target) -> bool:
    """True when `SELECT 1` answers as `where.user` over the unix socket; False on any failure (never raises)."""
    try:
        with _connect(where) as conn:
            row = conn.execute("SELECT 1").fetchone()
            return row == (1,)
    except (psycopg.Error, OSError) as exc:
        logger.debug("postgresql probe of %s not ready: %s", where.where, exc)
        return False


_PROTOCOL_3 = 196608
_STARTUP_ANSWER = struct.Struct("!cI")  # message type, length (itself included)
_MAX_ANSWER = 8192
# The SQLSTATE field of an ErrorResponse saying that every connection slot is taken.
_TOO_MANY_CLIENTS = b"C53300"


def _startup_message(user: str) -> bytes:
    params = b"".join(
        key + b"\0" + value.encode("utf-8") + b"\0"
        for key, value in ((b"user", user), (b"database", MAINTENANCE_DB), (b"application_name", "reddwarf-ping"))
    ) + b"\0"
    return struct.pack("!II", 8 + len(params), _PROTOCOL_3) + params


def ping(placement: Placement, user: str, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
    """True when the tenant endpoint (TCP to the placement's address and port) is a PostgreSQL server of the
    instance's OS user that accepts connections; never raises, never sends a credential.

    The listener's owner is checked first (`peer.connect_tcp_owned`); then a startup packet for `user`
    ends at the server's first answer: an authentication request means it accepts connections (an error,
    e.g. "the database system is starting up", means it does not). `busy_is_alive`: "too many clients"
    (SQLSTATE 53300) counts as an answer too: the server runs and serves others (anyone can fill its slots;
    the failover watch must not take that for a dead primary)."""
    try:
        uid = peer.uid_of(placement.os_user)
        with peer.connect_tcp_owned(placement.address, placement.port, uid, timeout) as sock:
            sock.sendall(_startup_message(user))
            kind, length = _STARTUP_ANSWER.unpack(peer.read_exactly(sock, _STARTUP_ANSWER.size))
            # Read the whole answer before closing: unread data turns the close into a reset, which the
            # server logs ("could not receive data from client"); a clean EOF during authentication it
            # does not log.
            body = peer.read_exactly(sock, max(0, min(length - 4, _MAX_ANSWER)))
    except (OSError, ValueError) as exc:
        logger.debug("postgresql ping of %s:%s: %s", placement.address, placement.port, exc)
        return False
    if kind == b"R":
        return True
    if busy_is_alive and kind == b"E" and _TOO_MANY_CLIENTS in body.split(b"\0"):
        return True
    logger.debug("postgresql ping of %s:%s answered %r, not an authentication request",
                 placement.address, placement.port, kind)
    return False


def _error_class(exc: psycopg.Error) -> str:
    return (exc.sqlstate or "")[:2]


def _is_transient(exc: psycopg.Error) -> bool:
    if _error_class(exc) in _TRANSIENT_CLASSES:
        return True
    # No SQLSTATE: the connection itself broke (server gone, network), not a refusal.
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and exc.sqlstate is None


def _describe(exc: psycopg.Error) -> str:
    diag = exc.diag.message_primary if exc.sqlstate else None
    return diag or str(exc).splitlines()[0]


@contextmanager
def session(where: Target) -> Iterator[psycopg.Connection[TupleRow]]:
    """An autocommit admin session; a failure to connect raises `TemporaryError` (the server may come up)."""
    try:
        conn = _connect(where)
    except psycopg.Error as exc:
        raise TemporaryError(
            f"cannot connect to PostgreSQL at {where.where} as {where.user}: {_describe(exc)}",
            delay=2.0,
        ) from exc
    with conn:
        yield conn


@contextmanager
def refusals(action: str) -> Iterator[None]:
    """Map a failing statement: transient -> `TemporaryError`, anything else -> `PermanentError`."""
    try:
        yield
    except psycopg.Error as exc:
        if _is_transient(exc):
            raise TemporaryError(f"PostgreSQL could not {action} for now: {_describe(exc)}") from exc
        raise PermanentError(
            f"PostgreSQL refused to {action}: {_describe(exc)}", details=f"SQLSTATE {exc.sqlstate or 'unknown'}"
        ) from exc


def _create_database_sql(database: DatabaseSpec, owner: str) -> sql.Composed:
    encoding = canonical_encoding(database.character_set) if database.character_set else None
    statement = sql.SQL("CREATE DATABASE {name} OWNER {owner}").format(
        name=sql.Identifier(database.name), owner=sql.Identifier(owner)
    )
    if (encoding in (None, CLUSTER_ENCODING)) and database.collate in (None, CLUSTER_LOCALE):
        return statement
    encoding = encoding or CLUSTER_ENCODING
    # C works with every encoding; C.UTF-8 only with UTF8.
    locale = database.collate or (CLUSTER_LOCALE if encoding == CLUSTER_ENCODING else "C")
    return statement + sql.SQL(" TEMPLATE template0 ENCODING {encoding} LC_COLLATE {locale} LC_CTYPE {locale}").format(
        encoding=sql.Literal(encoding), locale=sql.Literal(locale)
    )


def ensure_database(conn: psycopg.Connection[TupleRow], database: DatabaseSpec, owner: str) -> None:
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
        (database.name,),
    ).fetchone()
    if exists is None:
        with refusals(f"create database {database.name!r}"):
            try:
                conn.execute(_create_database_sql(database, owner))
                logger.info("created postgresql database %r", database.name)
            except psycopg.errors.DuplicateDatabase:
                logger.info("postgresql database %r was created concurrently", database.name)
    with refusals(f"restrict access to database {database.name!r}"):
        conn.execute(
            sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database.name))
        )


def ensure_role(conn: psycopg.Connection[TupleRow], user: UserSpec) -> None:
    """Create the login role, or make an existing one match (LOGIN, this password); no-op when it does."""
    row = conn.execute(
        "SELECT rolcanlogin, rolpassword FROM pg_catalog.pg_authid"
        " WHERE rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
        (user.name,),
    ).fetchone()
    password = user.password.reveal()
    name = sql.Identifier(user.name)
    if row is None:
        statement = sql.SQL(
            "CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
        ).format(name, sql.Literal(scram.verifier(password)))
        with refusals(f"create user {user.name!r}"):
            try:
                conn.execute(statement)
                logger.info("created postgresql role %r", user.name)
                return
            except psycopg.errors.DuplicateObject:
                logger.info("postgresql role %r was created concurrently", user.name)
    elif row[0] is True and isinstance(row[1], str) and scram.matches(password, row[1]):
        return
    with refusals(f"update user {user.name!r}"):
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(name, sql.Literal(scram.verifier(password)))
        )
        logger.info("reset login and password of postgresql role %r", user.name)


def ensure_orphans_role(conn: psycopg.Connection[TupleRow]) -> None:
    """The NOLOGIN, non-superuser role that takes over what a deleted user owned; made to match each time."""
    role = sql.Identifier(ORPHANS_ROLE)
    found = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name", (ORPHANS_ROLE,)
    ).fetchone()
    with refusals(f"create role {ORPHANS_ROLE!r}"):
        if found is None:
            try:
                conn.execute(sql.SQL("CREATE ROLE {} WITH NOLOGIN").format(role))
                logger.info("created postgresql role %r", ORPHANS_ROLE)
            except psycopg.errors.DuplicateObject:
                logger.info("postgresql role %r was created concurrently", ORPHANS_ROLE)
        conn.execute(
            sql.SQL(
                "ALTER ROLE {} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD NULL"
            ).format(role)
        )


def grant_database(where: Target, database: str, grantees: list[str], admin_user: str) -> None:
    """Let `grantees` connect to `database` and use its public schema, now and for objects made later."""
    if not grantees:
        return
    with session(replace(where, dbname=database)) as conn:
        db = sql.Identifier(database)
        with refusals(f"grant access to database {database!r}"):
            for grantee in grantees:
                role = sql.Identifier(grantee)
                conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, role))
                conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(role))
                for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
                    conn.execute(sql.SQL("GRANT ALL ON ALL {} IN SCHEMA public TO {}").format(sql.SQL(kind), role))
                # Objects any of the database's users (or the admin, e.g. a restore) create later.
                for creator in (admin_user, *grantees):
                    if creator == grantee:
                        continue
                    for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
                        conn.execute(
                            sql.SQL(
                                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT ALL ON {} TO {}"
                            ).format(sql.Identifier(creator), sql.SQL(kind), role)
                        )


def bootstrap(spec: InstanceSpec, where: Target) -> None:
    """Create the spec's databases, users and grants; idempotent (a re-run leaves the same state)."""
    with session(where) as conn:
        ensure_orphans_role(conn)
        for database in spec.databases:
            with refusals(f"inspect database {database.name!r}"):
                ensure_database(conn, database, owner=where.user)
        for user in spec.users:
            with refusals(f"inspect user {user.name!r}"):
                ensure_role(conn, user)
    for database in spec.databases:
        grantees = [user.name for user in spec.users if database.name in user.databases]
        grant_database(where, database.name, grantees, admin_user=where.user)


def set_password(conn: psycopg.Connection[TupleRow], role: str, password: Secret) -> None:
    """Give `role` `password`, sent as a client-side SCRAM verifier (the plain password never leaves here)."""
    with refusals(f"set the password of role {role!r}"):
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(scram.verifier(password.reveal()))
            )
        )

"""SQL spoken to a running MariaDB server: readiness probe, account hardening, databases, users, grants.

Every connection goes over the instance's own unix socket, its server checked (`SO_PEERCRED`) to run as
the instance's OS user before PyMySQL reads the greeting, and refuses authentication plugins that would
send the password in clear text; the tenant endpoint over TCP is only pinged, without a credential
(`ping`, see `reddwarf.engines.peer`).

This module, `accounts.py` and `backup.py` (which build on it) are the only ones of the engine that use PyMySQL.
Identifiers are validated names in backticks (backticks doubled); a database name in a GRANT also has its `_`
and `%` wildcards escaped, so a grant on `app_1` never covers `appX1`. Passwords travel only as client-side
`mysql_native_password` hashes bound as parameters (`passwords.py`): the plain password never crosses the
wire, so no server log can hold it.

Errors: a connection that fails (refused, timed out, server starting or shutting down, too many
connections) raises `TemporaryError`; a statement MariaDB refuses because of the tenant's input raises
`PermanentError` with MariaDB's message (password hashes masked).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import pymysql

from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines import peer
from reddwarf.engines.mariadb import config, passwords
from reddwarf.engines.mariadb.config import SYSTEM_ACCOUNT, account, quote_identifier
from reddwarf.engines.mariadb.validation import normalise_charset

logger = logging.getLogger(__name__)

# Server errors that may pass: too many connections, shutdown in progress, lock wait timeout, query
# interrupted, deadlock, connection killed, statement timeout; client errors: cannot connect, gone away,
# lost connection.
_TRANSIENT_ERRNOS = frozenset({1040, 1053, 1205, 1317, 1213, 1927, 1969, 2002, 2003, 2006, 2013, 2055})
ER_CANNOT_USER = 1396  # CREATE USER of an account that exists (made concurrently)
ER_SPECIFIC_ACCESS_DENIED = 1227  # a privilege the session's user lacks
_PASSWORD_PLUGINS = frozenset({"mysql_native_password", "ed25519", "parsec"})

Connection = Any  # pymysql ships no type information
Cursor = Any


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom to connect: the instance's own unix socket, whose server must run as `os_user`;
    never TCP."""

    socket: str
    os_user: str
    user: str
    password: Secret
    database: str | None = None
    timeout: float = 5.0


def target(
    placement: Placement, user: str, password: Secret, database: str | None = None, timeout: float = 5.0
) -> Target:
    socket = str(PurePosixPath(placement.socket_dir) / config.SOCKET_FILE)
    return Target(socket, placement.os_user, user, password, database, timeout)


class _Refused:
    """An authentication plugin PyMySQL would answer with the password in clear text (`mysql_clear_password`,
    `dialog`), or encrypted with a key the server itself hands out (`sha256_password`,
    `caching_sha2_password` without TLS), or with a weak hash (`mysql_old_password`): refused before
    anything is sent. Reddwarf's accounts use `mysql_native_password` (a challenge-response)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def authenticate(self, packet: object) -> object:
        raise pymysql.err.OperationalError(2059, "the server asked for an authentication method Reddwarf refuses")

    def prompt(self, echo: bool, prompt: bytes) -> bytes:
        raise pymysql.err.OperationalError(2059, "the server asked for an authentication method Reddwarf refuses")


REFUSED_PLUGINS = ("mysql_clear_password", "dialog", "sha256_password", "caching_sha2_password", "mysql_old_password")
_AUTH_PLUGIN_MAP: dict[str, type[_Refused]] = dict.fromkeys(REFUSED_PLUGINS, _Refused)


def _connect(where: Target) -> Connection:
    timeout = max(0.1, where.timeout)
    conn = pymysql.connect(
        user=where.user,
        # As bytes: PyMySQL would encode a str as latin-1; every MariaDB client sends UTF-8.
        password=where.password.reveal().encode("utf-8"),
        database=where.database,
        charset="utf8mb4",
        connect_timeout=timeout,
        read_timeout=timeout + 1.0,
        write_timeout=timeout + 1.0,
        autocommit=True,
        local_infile=False,
        # PyMySQL >= 1.2 tries TLS by default and builds a fresh SSL context (loading the system CA store,
        # 50-90 ms) on every connect; a unix socket needs none.
        ssl_disabled=True,
        auth_plugin_map=_AUTH_PLUGIN_MAP,
        # Bounds every statement of the session on the server side too.
        init_command=f"SET SESSION max_statement_time = {timeout:.3f}",
        # Connected below, on a socket whose peer was checked first.
        defer_connect=True,
    )
    # The instance's socket (its directory is 0700, its OS user's); SO_PEERCRED must name that user
    # before PyMySQL reads the greeting and answers it with the login.
    sock = peer.connect_unix(where.socket, peer.uid_of(where.os_user), timeout)
    conn.connect(sock)
    return conn


def _errno(exc: pymysql.err.MySQLError) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


def _describe(exc: pymysql.err.MySQLError) -> str:
    message = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc)
    return passwords.mask_hashes(message)


def _is_transient(exc: pymysql.err.MySQLError) -> bool:
    return isinstance(exc, pymysql.err.InterfaceError) or _errno(exc) in _TRANSIENT_ERRNOS


def probe(where: Target) -> bool:
    """True when `SELECT 1` answers as `where.user` (into `where.database`) over the instance's unix socket;
    never raises."""
    try:
        conn = _connect(where)
    except (pymysql.err.MySQLError, OSError) as exc:
        logger.debug("mariadb probe of %s not ready: %s", where.socket, _safe(exc))
        return False
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            return bool(cursor.fetchone() == (1,))
    except (pymysql.err.MySQLError, OSError) as exc:
        logger.debug("mariadb probe of %s failed: %s", where.socket, _safe(exc))
        return False
    finally:
        _close(conn)


_GREETING_HEADER = 4  # payload length (3 bytes), sequence number
_PROTOCOL_10 = 0x0A
_ERROR_PACKET = 0xFF  # then a 2-byte little-endian error code
_TOO_MANY_CONNECTIONS = 1040


def ping(placement: Placement, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
    """True when the tenant endpoint (TCP to the placement's address and port) is a MariaDB server of the
    instance's OS user that accepts connections; never raises, never sends anything.

    The listener's owner is checked first (`peer.connect_tcp_owned`); then the server's greeting is read:
    a protocol-10 handshake means it accepts connections (an error packet, e.g. too many connections, means
    it does not). `busy_is_alive`: "too many connections" (1040) counts as an answer too (anyone can fill its
    slots; the failover watch must not take that for a dead primary)."""
    try:
        uid = peer.uid_of(placement.os_user)
        with peer.connect_tcp_owned(placement.address, placement.port, uid, timeout) as sock:
            head = peer.read_exactly(sock, _GREETING_HEADER + 3)
    except OSError as exc:
        logger.debug("mariadb ping of %s:%s: %s", placement.address, placement.port, exc)
        return False
    first = head[_GREETING_HEADER]
    if first == _PROTOCOL_10:
        return True
    if busy_is_alive and first == _ERROR_PACKET and int.from_bytes(head[-2:], "little") == _TOO_MANY_CONNECTIONS:
        return True
    logger.debug("mariadb ping of %s:%s: no handshake (packet starts %#x)", placement.address, placement.port, first)
    return False


def _safe(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.MySQLError):
        return _describe(exc)
    return type(exc).__name__


def _close(conn: Connection) -> None:
    try:
        conn.close()
    except pymysql.err.Error:
        logger.debug("closing a mariadb connection failed (already closed)")


@contextmanager
def session(where: Target) -> Iterator[Cursor]:
    """A cursor of an autocommit admin session; failing to connect raises `TemporaryError`."""
    try:
        conn = _connect(where)
    except (pymysql.err.MySQLError, OSError) as exc:
        raise TemporaryError(
            f"cannot connect to MariaDB at {where.socket} as {where.user}: {_safe(exc)}", delay=2.0
        ) from None
    try:
        with conn.cursor() as cursor:
            _quiet_on_replica(cursor)
            yield cursor
    finally:
        _close(conn)


def _quiet_on_replica(cursor: Cursor) -> None:
    """Reddwarf's own writes on a read-only server (a replica) stay out of its binary log: with GTIDs in strict
    mode, a transaction a replica logged under its own server id is one its primary never had, and the replica
    could no longer follow a new primary after a switchover. On a primary they are logged (and replicated) as
    any write. A session whose user may not choose (not the admin) is left as it is."""
    try:
        cursor.execute("SET SESSION sql_log_bin = IF(@@global.read_only, 0, 1)")
    except pymysql.err.MySQLError as exc:
        if _errno(exc) != ER_SPECIFIC_ACCESS_DENIED:
            raise TemporaryError(f"MariaDB did not take a session setting: {_safe(exc)}", delay=2.0) from None


@contextmanager
def refusals(action: str) -> Iterator[None]:
    """Map a failing statement: transient -> `TemporaryError`, anything else -> `PermanentError`."""
    try:
        yield
    except pymysql.err.MySQLError as exc:
        if _is_transient(exc):
            raise TemporaryError(f"MariaDB could not {action} for now: {_describe(exc)}") from None
        raise PermanentError(
            f"MariaDB refused to {action}: {_describe(exc)}", details=f"MariaDB error {_errno(exc) or 'unknown'}"
        ) from None


def percent_safe(fragment: str) -> str:
    """A SQL fragment placed in a statement that also has bound parameters (PyMySQL formats with %)."""
    return fragment.replace("%", "%%")


def grant_pattern(database: str) -> str:
    """`database` as the literal (wildcard-free) database pattern of a GRANT ... ON `<db>`.* statement."""
    return quote_identifier(database.replace("_", "\\_").replace("%", "\\%"))


# -- accounts nobody may use without a password -----------------------------------------------------


def logs_in_without_password(priv: dict[str, Any]) -> bool:
    """True when an account (its `mysql.global_priv.Priv` JSON) admits a login with no password.

    Roles and locked accounts admit no login. Otherwise every authentication method of the account
    (the main one and each `auth_or` alternative) must be a password plugin with a non-empty stored hash.
    """
    if priv.get("is_role") or priv.get("account_locked"):
        return False
    main = {
        "plugin": priv.get("plugin", "mysql_native_password"),
        "authentication_string": priv.get("authentication_string", ""),
    }
    methods = [main]
    for alternative in priv.get("auth_or") or ():
        methods.append(alternative if isinstance(alternative, dict) and alternative else main)
    for method in methods:
        plugin = method.get("plugin", "mysql_native_password")
        if plugin not in _PASSWORD_PLUGINS or not method.get("authentication_string"):
            return True
    return False


SOCKET_PLUGIN = "unix_socket"
BACKUP_ACCOUNT_HOST = "localhost"  # with skip_name_resolve: the unix socket only, never TCP


def socket_only(priv: dict[str, Any]) -> bool:
    """True when an account (its `mysql.global_priv.Priv` JSON) logs in through `unix_socket` alone: only a
    process of the OS user of the account's name passes."""
    return priv.get("plugin") == SOCKET_PLUGIN and not priv.get("auth_or")


def is_backup_account(user: str, host: str, priv: dict[str, Any], os_user: str | None) -> bool:
    """The one passwordless account Reddwarf keeps: the instance's own OS user, over the socket, through
    `unix_socket` only (`backup.ensure_backup_account` says why it is safe)."""
    return os_user is not None and (user, host) == (os_user, BACKUP_ACCOUNT_HOST) and socket_only(priv)


def secure_accounts(cursor: Cursor, os_user: str | None = None) -> list[str]:
    """Drop anonymous accounts and lock every other account that logs in without a password.

    `mariadb-install-db` makes socket-authenticated accounts that the install SQL drops; this is the
    check that nothing of the kind survived or appeared since. The one exception is the backup account of
    `os_user` (`is_backup_account`). Returns the accounts it changed.
    """
    with refusals("list accounts"):
        cursor.execute("SELECT User, Host, Priv FROM mysql.global_priv")
        rows = cursor.fetchall()
    changed: list[str] = []
    for user, host, priv_text in rows:
        if (user, host) == SYSTEM_ACCOUNT:
            continue
        try:
            priv = json.loads(priv_text) if priv_text else {}
        except ValueError:
            priv = {}
        if not isinstance(priv, dict):
            priv = {}
        if is_backup_account(user, host, priv, os_user):
            continue
        who = account(user, host)
        if user == "":
            with refusals(f"drop the anonymous account @{host!r}"):
                cursor.execute(f"DROP USER IF EXISTS {who}")
        elif logs_in_without_password(priv):
            with refusals(f"lock the passwordless account {user!r}@{host!r}"):
                cursor.execute(f"ALTER USER {who} ACCOUNT LOCK")
        else:
            continue
        logger.warning("mariadb account %r@%r logged in without a password: dropped or locked", user, host)
        changed.append(f"{user}@{host}")
    return changed


# -- databases, users, grants -----------------------------------------------------------------------


def create_database_sql(database: DatabaseSpec) -> str:
    statement = f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database.name)}"
    if database.character_set:
        statement += f" CHARACTER SET {normalise_charset(database.character_set)}"
    if database.collate:
        statement += f" COLLATE {database.collate.strip().lower()}"
    return statement


def ensure_database(cursor: Cursor, database: DatabaseSpec) -> None:
    with refusals(f"create database {database.name!r}"):
        cursor.execute(create_database_sql(database))


def _stored_priv(cursor: Cursor, user: UserSpec) -> dict[str, Any] | None:
    cursor.execute("SELECT Priv FROM mysql.global_priv WHERE User = %s AND Host = %s", (user.name, user.host))
    row = cursor.fetchone()
    if row is None:
        return None
    try:
        found = json.loads(row[0]) if row[0] else {}
    except ValueError:
        found = {}
    return found if isinstance(found, dict) else {}


def up_to_date(priv: dict[str, Any], password: str) -> bool:
    return (
        priv.get("plugin", "mysql_native_password") == passwords.PLUGIN
        and not priv.get("auth_or")
        and not priv.get("account_locked")
        and passwords.matches(password, priv.get("authentication_string"))
    )


def ensure_user(cursor: Cursor, user: UserSpec) -> None:
    """Create the account, or make an existing one match (this password, unlocked); no-op when it does."""
    who = percent_safe(account(user.name, user.host))
    password = user.password.reveal()
    with refusals(f"inspect user {user.name!r}"):
        priv = _stored_priv(cursor, user)
    if priv is None:
        with refusals(f"create user {user.name!r}"):
            try:
                cursor.execute(f"CREATE USER {who} IDENTIFIED BY PASSWORD %s", (passwords.native_hash(password),))
                logger.info("created mariadb user %r@%r", user.name, user.host)
                return
            except pymysql.err.OperationalError as exc:
                if _errno(exc) != ER_CANNOT_USER:
                    raise
                logger.info("mariadb user %r@%r was created concurrently", user.name, user.host)
    elif up_to_date(priv, password):
        return
    with refusals(f"update user {user.name!r}"):
        cursor.execute(f"ALTER USER {who} IDENTIFIED BY PASSWORD %s ACCOUNT UNLOCK", (passwords.native_hash(password),))
        logger.info("reset password of mariadb user %r@%r", user.name, user.host)


def grant_database(cursor: Cursor, user: UserSpec, database: str) -> None:
    with refusals(f"grant user {user.name!r} access to database {database!r}"):
        cursor.execute(f"GRANT ALL PRIVILEGES ON {grant_pattern(database)}.* TO {account(user.name, user.host)}")


def bootstrap(spec: InstanceSpec, where: Target) -> None:
    """Secure the accounts, then create the spec's databases, users and grants; idempotent."""
    with session(where) as cursor:
        secure_accounts(cursor, where.os_user)
        for database in spec.databases:
            ensure_database(cursor, database)
        for user in spec.users:
            ensure_user(cursor, user)
            for name in user.databases:
                grant_database(cursor, user, name)

"""`MariadbAccounts`: live users, databases, grants and root on one running MariaDB server.

The `reddwarf.engines.base.Accounts` implementation. Every call opens its own short-lived admin session
(`admin.session`) over TCP. Names reach SQL only as validated identifiers in backticks (backticks doubled,
`config.quote_identifier`), values as bound parameters, and passwords only as client-side
`mysql_native_password` hashes bound as parameters (`passwords.py`): no plain password reaches the wire, a
MariaDB log or Reddwarf's.

The model (Trove's MySQL model):

- A user is an account `name@host`. A grant is `GRANT ALL PRIVILEGES ON <db>.*` with the database name's
  `_` and `%` escaped, so it covers that database only; a revoke is `REVOKE ALL PRIVILEGES ON <db>.*`, and
  it ends the user's sessions in that database (MariaDB checks database privileges only when a session
  enters a database).
- Root is `root@%`, the managed-service root (install-db's root accounts were dropped at install). MariaDB
  has no partial revokes, so it never gets ALL ON *.* (that includes writes to `mysql.*`, hence Reddwarf's
  admin, plugins, BINLOG and replication admin): globally only `ROOT_GLOBAL_PRIVILEGES` (no FILE, no
  SUPER, no CREATE USER, nothing on the `mysql` schema), and ALL PRIVILEGES WITH GRANT OPTION on every
  tenant database, kept in step: enabling root grants every database there is, creating a database while
  root exists grants it that one, deleting a database revokes every grant on it. The operator setting
  `root_superuser` gives ALL ON *.* instead. Disabling root drops it and ends root's sessions.
- Reddwarf's admin, `root`, `mariadb.sys`, anonymous accounts, roles, the backup account (named after the
  instance's OS user, `backup.ensure_backup_account`) and the system databases (`mysql`,
  `information_schema`, `performance_schema`, `sys`) are invisible: listings skip them and every method
  given one answers as if it did not exist; a tenant user may not take the backup account's name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import pymysql

from reddwarf.domain.accounts import UserInfo
from reddwarf.domain.errors import BadRequest, Conflict, NotFound
from reddwarf.domain.instance import DatabaseSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.mariadb import admin, passwords, validation
from reddwarf.engines.mariadb.admin import Cursor, Target, refusals, session
from reddwarf.engines.mariadb.config import REPLICATION_USER, SYSTEM_ACCOUNT, account, quote_identifier

logger = logging.getLogger(__name__)

ROOT_USER = "root"
ROOT_HOST = "%"
SYSTEM_DATABASES = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
ER_NONEXISTING_GRANT = 1141  # REVOKE of a grant that is not there
ER_NO_SUCH_THREAD = 1094  # KILL of a session that ended meanwhile
WRITE_TIMEOUT = 30.0  # DROP DATABASE of many tables: longer than a read, still bounded
# Global privileges of root (docs/root-privileges.md): see every database and every session; nothing that
# writes outside a tenant database, reads a file, reconfigures, stops or replicates the server, or touches
# an account.
ROOT_GLOBAL_PRIVILEGES = ("SHOW DATABASES", "PROCESS")


class MariadbAccounts:
    """Users, databases, grants and root of one MariaDB instance, as Reddwarf's admin account."""

    def __init__(self, where: Target, write_timeout: float = WRITE_TIMEOUT, *, root_superuser: bool = False) -> None:
        self._read = where
        self._write = replace(where, timeout=max(where.timeout, write_timeout))
        self._admin = where.user
        self._os_user = where.os_user
        self._root_superuser = root_superuser

    # -- what is invisible ------------------------------------------------------------------------

    def _hidden_user(self, name: str) -> bool:
        hidden = (self._admin, self._os_user, ROOT_USER, SYSTEM_ACCOUNT[0], REPLICATION_USER, "")
        return name in hidden or "\0" in name

    def _name_problem(self, name: str) -> str | None:
        if name == self._os_user:
            return f"The user name {name!r} is reserved."
        return validation.user_name_problem(name)

    @staticmethod
    def _hidden_database(name: str) -> bool:
        return name.lower() in SYSTEM_DATABASES or not name or "\0" in name

    # -- databases ----------------------------------------------------------------------------------

    def list_databases(self) -> list[DatabaseSpec]:
        with session(self._read) as cursor, refusals("list databases"):
            cursor.execute(
                "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME"
                " FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME"
            )
            rows = cursor.fetchall()
        return [
            DatabaseSpec(name=name, character_set=charset, collate=collation)
            for name, charset, collation in rows
            if not self._hidden_database(name)
        ]

    def create_databases(self, databases: Sequence[DatabaseSpec]) -> None:
        """CREATE DATABASE IF NOT EXISTS each one (an existing database is left as it is)."""
        for index, database in enumerate(databases):
            if self._hidden_database(database.name):
                raise BadRequest(f"The database name {database.name!r} is reserved.", field=f"databases[{index}].name")
        with session(self._write) as cursor:
            with refusals("inspect the root user"):
                root = _priv(cursor, ROOT_USER, ROOT_HOST) is not None
            for database in databases:
                admin.ensure_database(cursor, database)
                logger.info("ensured mariadb database %r", database.name)
                if root:
                    _grant_root(cursor, database.name)

    def delete_database(self, name: str) -> None:
        """Revoke every grant on the database (so a new one of that name starts clean), then drop it."""
        if self._hidden_database(name):
            raise NotFound("Database", name)
        with session(self._write) as cursor:
            with refusals(f"inspect grants on database {name!r}"):
                cursor.execute("SELECT User, Host FROM mysql.db WHERE Db = %s", (_escaped(name),))
                grantees = cursor.fetchall()
            for user, host in grantees:
                _revoke(cursor, user, host, name)
            with refusals(f"delete database {name!r}"):
                cursor.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)}")
        logger.info("dropped mariadb database %r", name)

    # -- users --------------------------------------------------------------------------------------

    def list_users(self) -> list[UserInfo]:
        with session(self._read) as cursor:
            return self._users(cursor)

    def get_user(self, name: str, host: str = "%") -> UserInfo | None:
        if self._hidden_user(name) or "\0" in host:
            return None
        with session(self._read) as cursor:
            found = self._users(cursor, (name, host))
        return found[0] if found else None

    def _users(self, cursor: Cursor, only: tuple[str, str] | None = None) -> list[UserInfo]:
        where, params = ("WHERE User = %s AND Host = %s", only) if only else ("", None)
        with refusals("list users"):
            cursor.execute(f"SELECT User, Host, Priv FROM mysql.global_priv {where} ORDER BY User, Host", params)
            accounts = [
                (user, host)
                for user, host, priv in cursor.fetchall()
                if not self._hidden_user(user) and not _role(priv)
            ]
            if not accounts:
                return []
            cursor.execute(f"SELECT User, Host, Db FROM mysql.db {where}", params)
            grants = cursor.fetchall()
            cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
            existing = {name for (name,) in cursor.fetchall() if not self._hidden_database(name)}
        databases: dict[tuple[str, str], set[str]] = {}
        for user, host, pattern in grants:
            database = _literal(pattern)
            if database is not None and database in existing:
                databases.setdefault((user, host), set()).add(database)
        return [
            UserInfo(name=user, host=host, databases=tuple(sorted(databases.get((user, host), ()))))
            for user, host in accounts
        ]

    def create_users(self, users: Sequence[UserSpec]) -> None:
        """Create (or make match) each account, then grant it its databases; all databases must exist."""
        for index, user in enumerate(users):
            _check(self._name_problem(user.name), f"users[{index}].name")
            _check(validation.host_problem(user.host), f"users[{index}].host")
            _check(validation.password_problem(user.password.reveal()), f"users[{index}].password")
        with session(self._write) as cursor:
            self._require_databases(cursor, {database for user in users for database in user.databases})
            for user in users:
                admin.ensure_user(cursor, user)
                for database in user.databases:
                    admin.grant_database(cursor, user, database)

    def update_user(
        self,
        name: str,
        host: str = "%",
        *,
        new_name: str | None = None,
        new_password: Secret | None = None,
        new_host: str | None = None,
    ) -> None:
        """RENAME USER for a new name or host, ALTER USER for a new password; a re-run finishes the job."""
        if self._hidden_user(name) or "\0" in host:
            raise NotFound("User", f"{name}@{host}")
        target = (new_name if new_name is not None else name, new_host if new_host is not None else host)
        if new_name is not None:
            _check(self._name_problem(new_name), "user.name")
        if new_host is not None:
            _check(validation.host_problem(new_host), "user.host")
        if new_password is not None:
            _check(validation.password_problem(new_password.reveal()), "user.password")
        with session(self._write) as cursor:
            with refusals(f"inspect user {name!r}"):
                old = _priv(cursor, name, host)
                new = _priv(cursor, *target) if target != (name, host) else old
            if target != (name, host):
                if old is not None and new is not None:
                    raise Conflict(f"User {target[0]}@{target[1]} already exists.")
                if old is None and new is None:
                    raise NotFound("User", f"{name}@{host}")
                if old is not None:  # else a previous run renamed it already
                    with refusals(f"rename user {name!r}"):
                        cursor.execute(f"RENAME USER {account(name, host)} TO {account(*target)}")
                    logger.info("renamed mariadb user %r@%r to %r@%r", name, host, *target)
                    new = old
            elif old is None:
                raise NotFound("User", f"{name}@{host}")
            if new_password is not None and not (new is not None and admin.up_to_date(new, new_password.reveal())):
                with refusals(f"set the password of user {target[0]!r}"):
                    cursor.execute(
                        f"ALTER USER {admin.percent_safe(account(*target))} IDENTIFIED BY PASSWORD %s",
                        (passwords.native_hash(new_password.reveal()),),
                    )
                logger.info("set a new password for mariadb user %r@%r", *target)

    def delete_user(self, name: str, host: str = "%") -> None:
        """DROP USER IF EXISTS; the user's sessions end when no account of that name is left."""
        if self._hidden_user(name) or "\0" in host:
            raise NotFound("User", f"{name}@{host}")
        with session(self._write) as cursor:
            with refusals(f"delete user {name!r}"):
                cursor.execute(f"DROP USER IF EXISTS {account(name, host)}")
                cursor.execute("SELECT 1 FROM mysql.global_priv WHERE User = %s", (name,))
                others = cursor.fetchone() is not None
            if not others:
                _kill_sessions(cursor, name)
        logger.info("dropped mariadb user %r@%r", name, host)

    # -- grants -------------------------------------------------------------------------------------

    def grant(self, name: str, host: str, databases: Sequence[str]) -> None:
        """GRANT ALL PRIVILEGES on each database (wildcards escaped); the account and databases must exist."""
        if self._hidden_user(name) or "\0" in host:
            raise NotFound("User", f"{name}@{host}")
        with session(self._write) as cursor:
            with refusals(f"inspect user {name!r}"):
                if _priv(cursor, name, host) is None:
                    raise NotFound("User", f"{name}@{host}")
            self._require_databases(cursor, databases)
            for database in dict.fromkeys(databases):
                with refusals(f"grant user {name!r} access to database {database!r}"):
                    cursor.execute(
                        f"GRANT ALL PRIVILEGES ON {admin.grant_pattern(database)}.* TO {account(name, host)}"
                    )
        logger.info("granted mariadb user %r@%r access to %d databases", name, host, len(databases))

    def revoke(self, name: str, host: str, database: str) -> None:
        """REVOKE ALL PRIVILEGES on the database and end the user's sessions in it."""
        if self._hidden_user(name) or "\0" in host:
            raise NotFound("User", f"{name}@{host}")
        with session(self._write) as cursor:
            with refusals(f"inspect user {name!r}"):
                if _priv(cursor, name, host) is None:
                    raise NotFound("User", f"{name}@{host}")
            self._require_databases(cursor, [database])
            _revoke(cursor, name, host, database)
            _kill_sessions(cursor, name, database)
        logger.info("revoked access of mariadb user %r@%r to database %r", name, host, database)

    # -- root ---------------------------------------------------------------------------------------

    def root_enabled(self) -> bool:
        with session(self._read) as cursor, refusals("inspect the root user"):
            return _priv(cursor, ROOT_USER, ROOT_HOST) is not None

    def enable_root(self, password: Secret) -> str:
        """Create or reset `root@%` with `password` (sent as its hash) and exactly root's privileges (the global
        list and every tenant database, or everything with `root_superuser`); returns "root"."""
        _check(validation.password_problem(password.reveal()), "password")
        who = account(ROOT_USER, ROOT_HOST)
        with session(self._write) as cursor:
            admin.ensure_user(cursor, UserSpec(ROOT_USER, password, host=ROOT_HOST))
            with refusals("reset root's privileges"):
                cursor.execute(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who}")
            if self._root_superuser:
                with refusals("grant root every privilege"):
                    cursor.execute(f"GRANT ALL PRIVILEGES ON *.* TO {who} WITH GRANT OPTION")
                    # Never past a replica's read_only (with it a user writes through read_only=1, measured).
                    cursor.execute(f"REVOKE READ_ONLY ADMIN ON *.* FROM {who}")
            else:
                with refusals("grant root its global privileges"):
                    cursor.execute(f"GRANT {', '.join(ROOT_GLOBAL_PRIVILEGES)} ON *.* TO {who}")
                    cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
                    names = [name for (name,) in cursor.fetchall() if not self._hidden_database(name)]
                for name in names:
                    _grant_root(cursor, name)
        logger.info("enabled the mariadb root %r@%r (every privilege: %s)", ROOT_USER, ROOT_HOST, self._root_superuser)
        return ROOT_USER

    def disable_root(self) -> None:
        """DROP USER root@% (Trove's MySQL behaviour) and end root's sessions."""
        with session(self._write) as cursor:
            with refusals("disable root"):
                cursor.execute(f"DROP USER IF EXISTS {account(ROOT_USER, ROOT_HOST)}")
            _kill_sessions(cursor, ROOT_USER)
        logger.info("disabled the mariadb superuser %r@%r", ROOT_USER, ROOT_HOST)

    # -- checks -------------------------------------------------------------------------------------

    def _require_databases(self, cursor: Cursor, names: Iterable[str]) -> None:
        for name in names:
            if self._hidden_database(name):
                raise NotFound("Database", name)
            with refusals(f"inspect database {name!r}"):
                cursor.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
                if cursor.fetchone() is None:
                    raise NotFound("Database", name)


def _check(problem: str | None, field: str) -> None:
    if problem:
        raise BadRequest(problem, field=field)


def _escaped(database: str) -> str:
    """The database pattern a literal grant stores in mysql.db (`_` and `%` escaped)."""
    return database.replace("_", "\\_").replace("%", "\\%")


def _literal(pattern: str) -> str | None:
    """The database a mysql.db pattern names literally; None for a pattern with unescaped wildcards."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(next(chars, ""))
        elif ch in "_%":
            return None
        else:
            out.append(ch)
    return "".join(out)


def _role(priv_text: str | None) -> bool:
    try:
        priv = json.loads(priv_text) if priv_text else {}
    except ValueError:
        return False
    return isinstance(priv, dict) and bool(priv.get("is_role"))


def _priv(cursor: Cursor, name: str, host: str) -> dict[str, Any] | None:
    """The account's `mysql.global_priv.Priv` JSON; None when there is no such account (or it is a role)."""
    cursor.execute("SELECT Priv FROM mysql.global_priv WHERE User = %s AND Host = %s", (name, host))
    row = cursor.fetchone()
    if row is None:
        return None
    try:
        found = json.loads(row[0]) if row[0] else {}
    except ValueError:
        found = {}
    if not isinstance(found, dict):
        return {}
    return None if found.get("is_role") else found


def _grant_root(cursor: Cursor, database: str) -> None:
    """ALL PRIVILEGES WITH GRANT OPTION on one tenant database (its name's wildcards escaped) to `root@%`."""
    with refusals(f"let root reach database {database!r}"):
        cursor.execute(
            f"GRANT ALL PRIVILEGES ON {admin.grant_pattern(database)}.* TO {account(ROOT_USER, ROOT_HOST)}"
            " WITH GRANT OPTION"
        )


def _revoke(cursor: Cursor, name: str, host: str, database: str) -> None:
    """REVOKE ALL PRIVILEGES and GRANT OPTION (root's) on the database; what is not there is no error."""
    on = f"{admin.grant_pattern(database)}.* FROM {account(name, host)}"
    with refusals(f"revoke access of {name!r} to database {database!r}"):
        for statement in (f"REVOKE ALL PRIVILEGES ON {on}", f"REVOKE GRANT OPTION ON {on}"):
            try:
                cursor.execute(statement)
            except pymysql.err.OperationalError as exc:
                if not exc.args or exc.args[0] != ER_NONEXISTING_GRANT:
                    raise


def _kill_sessions(cursor: Cursor, user: str, database: str | None = None) -> None:
    """End the sessions logged in as `user` (only those in `database`, if given)."""
    query = "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND ID <> CONNECTION_ID()"
    params: tuple[str, ...] = (user,)
    if database is not None:
        query += " AND DB = %s"
        params = (user, database)
    with refusals(f"list the sessions of {user!r}"):
        cursor.execute(query, params)
        ids = [int(row[0]) for row in cursor.fetchall()]
    for session_id in ids:
        with refusals(f"end a session of {user!r}"):
            try:
                cursor.execute("KILL CONNECTION %s", (session_id,))
            except pymysql.err.OperationalError as exc:
                if not exc.args or exc.args[0] != ER_NO_SUCH_THREAD:
                    raise
    if ids:
        logger.info("ended %d mariadb sessions of %r", len(ids), user)

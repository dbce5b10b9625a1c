"""`PostgresqlAccounts`: live users, databases, grants and root on one running PostgreSQL server.

The `reddwarf.engines.base.Accounts` implementation. Every call opens its own short-lived admin session
(`admin.session`) over TCP; identifiers reach SQL only as `sql.Identifier`, values as bound parameters or
`sql.Literal`, and passwords only as client-side SCRAM verifiers (`scram.py`), so no password reaches the
wire, PostgreSQL's log or Reddwarf's.

The model (Trove's, made meaningful for PostgreSQL):

- A user is a role WITH LOGIN, never superuser, never CREATEROLE; its host is always `%`.
- Every tenant database has CONNECT revoked from PUBLIC, so a grant means something: a grant is CONNECT
  (and TEMPORARY) on the database plus USAGE and CREATE on its `public` schema, privileges on what is in it
  and default privileges for what its users and the admin create later (`admin.grant_database`). A revoke
  removes all of that and ends the user's sessions in the database, so the user can no longer reach it.
- Root is a role `root` with the managed-service privileges of `root.py` (no superuser; the operator
  setting `root_superuser` gives one); disabling root makes it NOLOGIN without a password and ends its
  sessions (the role is kept, as Trove does, and so are its memberships). `root` never shows in user
  listings.
- Deleting a user hands what it owns to `reddwarf_orphans`, a NOLOGIN non-superuser role `root` is a member
  of, never to the superuser admin (whose ownership would turn a tenant's SECURITY DEFINER function into a
  superuser's).
- Reddwarf's admin, `root`, `reddwarf_orphans`, `pg_*` roles and the system databases (`postgres`,
  `template0`, `template1`) are invisible: listings skip them and every method given one answers as if it
  did not exist.
- Every statement names catalogs, functions and operators with `pg_catalog.`, and sessions run with
  `search_path=pg_catalog, pg_temp` (`admin.py`): a tenant's objects in `public` are never picked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from reddwarf.domain.accounts import UserInfo
from reddwarf.domain.errors import BadRequest, Conflict, NotFound, PermanentError
from reddwarf.domain.instance import DatabaseSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.postgresql import admin, root, scram, validation
from reddwarf.engines.postgresql.admin import ORPHANS_ROLE, REPLICATOR, Target, refusals, session

logger = logging.getLogger(__name__)

ROOT_USER = validation.ROOT_USER
ANY_HOST = validation.ANY_HOST
SYSTEM_DATABASES = ("postgres", "template0", "template1")
_KINDS = ("TABLES", "SEQUENCES", "FUNCTIONS")
WRITE_TIMEOUT = 30.0  # DROP DATABASE, REASSIGN OWNED: longer than a read, still bounded

Connection = psycopg.Connection[TupleRow]

_TENANT_DATABASES = sql.SQL(
    "SELECT datname, pg_catalog.pg_encoding_to_char(encoding), datcollate FROM pg_catalog.pg_database"
    " WHERE NOT datistemplate AND datname OPERATOR(pg_catalog.<>) ALL({system}::pg_catalog.name[]) ORDER BY datname"
).format(system=sql.Literal(list(SYSTEM_DATABASES)))
# Roles granted CONNECT on a tenant database, as (role oid, database).
_CONNECT_GRANTS = sql.SQL(
    "SELECT a.grantee, d.datname FROM pg_catalog.pg_database d CROSS JOIN LATERAL pg_catalog.aclexplode(d.datacl) a"
    " WHERE a.privilege_type OPERATOR(pg_catalog.=) 'CONNECT'::pg_catalog.text AND NOT d.datistemplate"
    " AND d.datname OPERATOR(pg_catalog.<>) ALL({system}::pg_catalog.name[])"
).format(system=sql.Literal(list(SYSTEM_DATABASES)))


class PostgresqlAccounts:
    """Users, databases, grants and root of one PostgreSQL instance, as Reddwarf's admin role."""

    def __init__(self, where: Target, write_timeout: float = WRITE_TIMEOUT, *, root_superuser: bool = False) -> None:
        self._read = where
        self._write = replace(where, timeout=max(where.timeout, write_timeout))
        self._admin = where.user
        self._root_superuser = root_superuser

    # -- what is invisible ------------------------------------------------------------------------

    def _hidden_user(self, name: str) -> bool:
        """Names no tenant user can have: the admin, root, PostgreSQL's own roles (or not a name at all)."""
        hidden = (self._admin, ROOT_USER, ORPHANS_ROLE, REPLICATOR)
        return name in hidden or name.lower().startswith("pg_") or not name or "\0" in name

    @staticmethod
    def _hidden_database(name: str) -> bool:
        return name in SYSTEM_DATABASES or not name or "\0" in name

    def _in(self, database: str, *, write: bool = True) -> Target:
        return replace(self._write if write else self._read, dbname=database)

    # -- databases ----------------------------------------------------------------------------------

    def list_databases(self) -> list[DatabaseSpec]:
        with session(self._read) as conn, refusals("list databases"):
            rows = conn.execute(_TENANT_DATABASES).fetchall()
        return [DatabaseSpec(name=name, character_set=encoding, collate=collate) for name, encoding, collate in rows]

    def create_databases(self, databases: Sequence[DatabaseSpec]) -> None:
        """Create each database that is missing (owned by the admin, CONNECT revoked from PUBLIC)."""
        for index, database in enumerate(databases):
            if self._hidden_database(database.name):
                raise BadRequest(f"The database name {database.name!r} is reserved.", field=f"databases[{index}].name")
        with session(self._write) as conn:
            for database in databases:
                with refusals(f"inspect database {database.name!r}"):
                    admin.ensure_database(conn, database, owner=self._admin)
            with refusals("inspect the root user"):
                root_exists = root.exists(conn)
        if root_exists:
            for database in databases:
                root.grant_database(self._write, database.name)

    def delete_database(self, name: str) -> None:
        """End the database's sessions, then drop it; a database already gone is no error."""
        if self._hidden_database(name):
            raise NotFound("Database", name)
        with session(self._write) as conn:
            if not _database_exists(conn, name):
                return
            db = sql.Identifier(name)
            with refusals(f"delete database {name!r}"):
                # No new session may start (superusers included), then end those that run.
                conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(db))
                conn.execute(
                    "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                    " WHERE datname OPERATOR(pg_catalog.=) %s::pg_catalog.name"
                    " AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()",
                    (name,),
                )
                force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(db) + force)
        logger.info("dropped postgresql database %r", name)

    # -- users --------------------------------------------------------------------------------------

    def list_users(self) -> list[UserInfo]:
        with session(self._read) as conn, refusals("list users"):
            roles = _login_roles(conn)
            grants = conn.execute(_CONNECT_GRANTS).fetchall()
        return self._users(roles, grants)

    def get_user(self, name: str, host: str = ANY_HOST) -> UserInfo | None:
        if host != ANY_HOST or self._hidden_user(name):
            return None
        with session(self._read) as conn, refusals(f"inspect user {name!r}"):
            roles = [(oid, role) for oid, role in _login_roles(conn) if role == name]
            grants = conn.execute(_CONNECT_GRANTS).fetchall() if roles else []
        users = self._users(roles, grants)
        return users[0] if users else None

    def _users(self, roles: list[tuple[int, str]], grants: list[tuple[int, str]]) -> list[UserInfo]:
        databases: dict[int, list[str]] = {}
        for oid, database in grants:
            databases.setdefault(oid, []).append(database)
        return [
            UserInfo(name=name, host=ANY_HOST, databases=tuple(sorted(databases.get(oid, ()))))
            for oid, name in roles
            if not self._hidden_user(name)
        ]

    def create_users(self, users: Sequence[UserSpec]) -> None:
        """Create (or make match) each login role, then grant it its databases; all databases must exist."""
        for index, user in enumerate(users):
            self._check_new_user(user.name, f"users[{index}].name")
            self._check_host(user.host, f"users[{index}].host")
            self._check_password(user.password, f"users[{index}].password")
        wanted = sorted({database for user in users for database in user.databases})
        with session(self._write) as conn:
            self._require_databases(conn, wanted)
            for user in users:
                with refusals(f"inspect user {user.name!r}"):
                    admin.ensure_role(conn, user)
                    root.grant_member(conn, user.name)
        for database in wanted:
            self._grant_database(database, [user.name for user in users if database in user.databases])

    def update_user(
        self,
        name: str,
        host: str = ANY_HOST,
        *,
        new_name: str | None = None,
        new_password: Secret | None = None,
        new_host: str | None = None,
    ) -> None:
        """Rename (ALTER ROLE ... RENAME TO) and/or set a new password; a re-run after a crash finishes the job."""
        if host != ANY_HOST or self._hidden_user(name):
            raise NotFound("User", name)
        if new_host is not None:
            self._check_host(new_host, "user.host")
        if new_password is not None:
            self._check_password(new_password, "user.password")
        target = new_name if new_name is not None else name
        if target != name:
            self._check_new_user(target, "user.name")
        with session(self._write) as conn:
            with refusals(f"inspect user {name!r}"):
                old = _role_password(conn, name)
                new = _role_password(conn, target) if target != name else old
            if target != name:
                if old is not None and new is not None:
                    raise Conflict(f"User {target!r} already exists.")
                if old is None and new is None:
                    raise NotFound("User", name)
                if old is not None:  # else a previous run renamed it already
                    self._rename(conn, name, target, old[1], new_password)
                    new = _role_password(conn, target)
            elif old is None:
                raise NotFound("User", name)
            if new_password is not None and new is not None and not scram.matches(new_password.reveal(), new[1]):
                with refusals(f"set the password of user {target!r}"):
                    conn.execute(
                        sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                            sql.Identifier(target), sql.Literal(scram.verifier(new_password.reveal()))
                        )
                    )
                logger.info("set a new password for postgresql role %r", target)

    def _rename(self, conn: Connection, name: str, target: str, stored: str | None, password: Secret | None) -> None:
        # PostgreSQL keeps a SCRAM verifier across a rename but clears an MD5 hash (salted with the name).
        if password is None and stored is not None and stored.startswith("md5"):
            raise PermanentError(
                f"User {name!r} has an MD5 password, which PostgreSQL clears on rename; give a new password too."
            )
        with refusals(f"rename user {name!r}"):
            conn.execute(sql.SQL("ALTER ROLE {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(target)))
        logger.info("renamed postgresql role %r to %r", name, target)

    def delete_user(self, name: str, host: str = ANY_HOST) -> None:
        """Stop its logins and sessions, hand what it owns to `reddwarf_orphans` (NOLOGIN, no superuser),
        drop its privileges, drop the role."""
        if host != ANY_HOST or self._hidden_user(name):
            raise NotFound("User", name)
        role = sql.Identifier(name)
        with session(self._write) as conn:
            if _role_password(conn, name) is None:
                return
            with refusals(f"delete user {name!r}"):
                conn.execute(sql.SQL("ALTER ROLE {} WITH NOLOGIN").format(role))
                _terminate(conn, name)
                admin.ensure_orphans_role(conn)
                rows = conn.execute(
                    "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate"
                ).fetchall()
        # Objects and privileges live per database: clear them in each (shared ones with the first).
        for (database,) in rows:
            with session(self._in(database)) as conn, refusals(f"delete user {name!r} in database {database!r}"):
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(role, sql.Identifier(ORPHANS_ROLE)))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        with session(self._write) as conn, refusals(f"delete user {name!r}"):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
        logger.info("dropped postgresql role %r", name)

    # -- grants -------------------------------------------------------------------------------------

    def grant(self, name: str, host: str, databases: Sequence[str]) -> None:
        """Let the user connect to each database and work in its public schema; all must exist."""
        if host != ANY_HOST or self._hidden_user(name):
            raise NotFound("User", name)
        with session(self._read) as conn:
            with refusals(f"inspect user {name!r}"):
                if _role_password(conn, name) is None:
                    raise NotFound("User", name)
            self._require_databases(conn, databases)
        for database in dict.fromkeys(databases):
            self._grant_database(database, [name])

    def _grant_database(self, database: str, grantees: list[str]) -> None:
        """`admin.grant_database` for the new grantees and those already there (default privileges both ways)."""
        if not grantees:
            return
        with session(self._read) as conn, refusals(f"inspect grants on database {database!r}"):
            current = [role for role in _grantees(conn, database) if not self._hidden_user(role)]
        everyone = sorted(set(current) | set(grantees))
        admin.grant_database(self._write, database, everyone, admin_user=self._admin)
        logger.info("granted postgresql roles %s access to database %r", sorted(grantees), database)

    def revoke(self, name: str, host: str, database: str) -> None:
        """Remove every privilege the grant gave and end the user's sessions in that database."""
        if host != ANY_HOST or self._hidden_user(name):
            raise NotFound("User", name)
        with session(self._read) as conn:
            with refusals(f"inspect user {name!r}"):
                if _role_password(conn, name) is None:
                    raise NotFound("User", name)
            self._require_databases(conn, [database])
        role = sql.Identifier(name)
        with session(self._in(database)) as conn, refusals(f"revoke access of {name!r} to database {database!r}"):
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(database), role))
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(role))
            for kind in _KINDS:
                conn.execute(sql.SQL("REVOKE ALL ON ALL {} IN SCHEMA public FROM {}").format(sql.SQL(kind), role))
            creators = conn.execute(
                "SELECT DISTINCT pg_catalog.pg_get_userbyid(defaclrole) FROM pg_catalog.pg_default_acl"
                " WHERE defaclnamespace OPERATOR(pg_catalog.=) 'public'::pg_catalog.regnamespace::pg_catalog.oid"
            ).fetchall()
            for (creator,) in creators:
                for kind in _KINDS:
                    conn.execute(
                        sql.SQL(
                            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public REVOKE ALL ON {} FROM {}"
                        ).format(sql.Identifier(creator), sql.SQL(kind), role)
                    )
            _terminate(conn, name, database)
        logger.info("revoked access of postgresql role %r to database %r", name, database)

    # -- root ---------------------------------------------------------------------------------------

    def root_enabled(self) -> bool:
        with session(self._read) as conn, refusals("inspect the root user"):
            row = conn.execute(
                "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
                (ROOT_USER,),
            ).fetchone()
        return row is not None and row[0] is True

    def enable_root(self, password: Secret) -> str:
        """Create or reset `root` with `password` (sent as a SCRAM verifier) and the privileges of `root.py`;
        returns "root"."""
        self._check_password(password, "password")
        with session(self._write) as conn:
            databases = root.make_root(conn, scram.verifier(password.reveal()), self._root_superuser)
        for database in databases:
            root.grant_database(self._write, database)
        logger.info("enabled the postgresql role %r (superuser: %s)", ROOT_USER, self._root_superuser)
        return ROOT_USER

    def disable_root(self) -> None:
        """`root` may no longer log in (no password, NOLOGIN) and its sessions end; the role is kept."""
        with session(self._write) as conn, refusals("disable root"):
            if _role_password(conn, ROOT_USER) is None:
                return
            conn.execute(sql.SQL("ALTER ROLE {} WITH NOLOGIN PASSWORD NULL").format(sql.Identifier(ROOT_USER)))
            _terminate(conn, ROOT_USER)
        logger.info("disabled the postgresql superuser %r", ROOT_USER)

    # -- checks -------------------------------------------------------------------------------------

    def _check_new_user(self, name: str, field: str) -> None:
        problem = validation.account_name_problem(name)
        if problem:
            raise BadRequest(problem, field=field)

    @staticmethod
    def _check_host(host: str, field: str) -> None:
        problem = validation.host_problem(host)
        if problem:
            raise BadRequest(problem, field=field)

    @staticmethod
    def _check_password(password: Secret, field: str) -> None:
        problem = validation.password_problem(password.reveal())
        if problem:
            raise BadRequest(problem, field=field)

    def _require_databases(self, conn: Connection, names: Iterable[str]) -> None:
        for name in names:
            if self._hidden_database(name):
                raise NotFound("Database", name)
            with refusals(f"inspect database {name!r}"):
                if not _database_exists(conn, name):
                    raise NotFound("Database", name)


def _database_exists(conn: Connection, name: str) -> bool:
    query = "SELECT 1 FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) %s::pg_catalog.name"
    return conn.execute(query, (name,)).fetchone() is not None


def _role_password(conn: Connection, name: str) -> tuple[bool, str | None] | None:
    """(can log in, stored password) of role `name`, None when there is no such role."""
    row = conn.execute(
        "SELECT rolcanlogin, rolpassword FROM pg_catalog.pg_authid"
        " WHERE rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name",
        (name,),
    ).fetchone()
    return None if row is None else (bool(row[0]), row[1])


def _login_roles(conn: Connection) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT oid, rolname FROM pg_catalog.pg_roles WHERE rolcanlogin"
        " AND pg_catalog.left(rolname, 3) OPERATOR(pg_catalog.<>) 'pg_' ORDER BY rolname"
    ).fetchall()
    return [(int(oid), str(name)) for oid, name in rows]


def _grantees(conn: Connection, database: str) -> list[str]:
    rows = conn.execute(
        "SELECT pg_catalog.pg_get_userbyid(a.grantee) FROM pg_catalog.pg_database d"
        " CROSS JOIN LATERAL pg_catalog.aclexplode(d.datacl) a"
        " WHERE d.datname OPERATOR(pg_catalog.=) %s::pg_catalog.name"
        " AND a.privilege_type OPERATOR(pg_catalog.=) 'CONNECT'::pg_catalog.text"
        " AND a.grantee OPERATOR(pg_catalog.<>) 0::pg_catalog.oid",
        (database,),
    ).fetchall()
    return [str(role) for (role,) in rows]


def _terminate(conn: Connection, user: str, database: str | None = None) -> None:
    """End the sessions of `user` (in `database` only, if given)."""
    query = (
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
        " WHERE usename OPERATOR(pg_catalog.=) %s::pg_catalog.name"
        " AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
    )
    params: tuple[str, ...] = (user,)
    if database is not None:
        query += " AND datname OPERATOR(pg_catalog.=) %s::pg_catalog.name"
        params = (user, database)
    conn.execute(query, params)

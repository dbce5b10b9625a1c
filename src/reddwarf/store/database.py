"""The metadata store's entry point: engine set-up, migrations under a lock, and units of work.

SQLite (the embedded default) is shared by several processes (API, workers, CLI), so every connection runs
in WAL mode with a 30 s busy timeout and foreign keys on, pysqlite's own transaction handling is switched
off (SQLAlchemy's documented recipe), and every *write* unit of work begins with `BEGIN IMMEDIATE`: the
write lock is taken up front, so two writers queue on the busy timeout instead of one failing with
"database is locked" when it upgrades a read lock. Read-only units of work use a plain `BEGIN` and are
refused any write (`PRAGMA query_only` on SQLite, `SET TRANSACTION READ ONLY` on PostgreSQL).

PostgreSQL (`postgresql+psycopg://...`) is the production store; migrations there are serialised with a
session-level `pg_advisory_lock`, on SQLite with an fcntl lock on a file next to the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from reddwarf.domain.errors import StoreOutcomeUnknown, StoreUnavailable
from reddwarf.store.listen import WorkListener
from reddwarf.store.secrets import KeyFileError, SecretCipher, SecretDecryptionError
from reddwarf.store.uow import UnitOfWork

log = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S: Final = 30.0
PG_CONNECT_TIMEOUT_S: Final = 10
# A store host that vanishes without a reset (a failover moving an address, a dead host): libpq's keepalives
# and TCP_USER_TIMEOUT end a connection stuck on it in ~30 s instead of the kernel's ~15 minutes.
_PG_TCP_ARGS: Final = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                       "tcp_user_timeout": 30_000}
_SQLITE_LOCKED: Final = "database is locked"
_PG_RETRYABLE: Final = frozenset({"40001", "40P01"})  # serialization failure, deadlock detected
_PG_READ_ONLY_TRANSACTION: Final = "25006"
_SECRET_QUERY_KEYS: Final = frozenset({"password", "sslpassword"})
_WRITE_OPTION: Final = "reddwarf_write"
# An arbitrary, fixed 64-bit key for pg_advisory_lock: "reddwarf" in ASCII.
_PG_MIGRATION_LOCK_KEY: Final = 0x7265646477617266


class Database:
    """One metadata store: a SQLAlchemy engine, the secret cipher, and the unit-of-work factory.

    Build it once per process with `from_url` (no module-level engine), call `upgrade()` at start-up, and
    `dispose()` at shutdown.
    """

    def __init__(self, engine: Engine, cipher: SecretCipher, *, sqlite_path: Path | None) -> None:
        self._engine = engine
        self._cipher = cipher
        self._sqlite_path = sqlite_path

    @classmethod
    def from_url(cls, url: str, *, key_file: Path) -> Database:
        """Open the store at `url` (`sqlite:////abs/path.db`, `sqlite://` in memory, `postgresql+psycopg://`).

        The secrets' key file is created when missing, unless the store already holds secrets: then they
        were encrypted with a key this host does not have, and a new one would only make them unreadable
        (`KeyFileError`, naming the file to copy)."""
        engine, sqlite_path = _engine_for(url)
        if not key_file.exists() and _holds_secrets(engine):
            engine.dispose()
            raise KeyFileError(
                f"the secrets' key file {key_file} is missing, but the metadata store "
                f"{_masked_url(engine.url)} already holds secrets encrypted with a key: "
                f"copy the deployment's key file to {key_file} (mode 0600). Every host sharing a store needs "
                "the same key file."
            )
        return cls(engine, SecretCipher(key_file), sqlite_path=sqlite_path)

    def verify_key(self) -> None:
        """Refuse to start (`KeyFileError`) when the store holds secrets that the key file cannot decrypt: a
        host given the wrong key file would otherwise answer 503 on every request that needs a password."""
        with self._engine.connect() as connection:
            connection.execution_options(**{_WRITE_OPTION: False})
            ciphertext = connection.execute(text("SELECT ciphertext FROM secrets LIMIT 1")).scalar()
            connection.rollback()
        if ciphertext is None:
            return
        try:
            self._cipher.decrypt(str(ciphertext))
        except SecretDecryptionError:
            raise KeyFileError(
                f"the keys in {self._cipher.key_file} cannot decrypt the secrets in the metadata store {self.url}: "
                "install the deployment's key file (every host sharing a store needs the same one)."
            ) from None

    @property
    def dialect(self) -> str:
        """`"sqlite"` or `"postgresql"`."""
        return self._engine.dialect.name

    @property
    def url(self) -> str:
        """The URL with any password masked (in its user part or its query): safe to log or show."""
        return _masked_url(self._engine.url)

    @contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[UnitOfWork]:
        """One transaction: commits on normal exit, rolls back on any exception (then re-raises it).

        Keep units of work short and never nest a write unit of work inside another in the same thread:
        on SQLite the inner one would wait for the outer one's write lock until the busy timeout.
        """
        try:
            connection = self._engine.connect()
        except (OperationalError, PoolTimeout) as exc:  # down, silent past the connect timeout, or saturated
            raise self._unavailable(exc) from exc
        with connection:
            connection.execution_options(**{_WRITE_OPTION: write})
            session = Session(bind=connection, expire_on_commit=False, autoflush=True)
            uow = UnitOfWork(session, self._cipher)
            committing = False
            try:
                yield uow
                committing = True
                session.commit()
            except BaseException as exc:
                try:
                    try:
                        session.rollback()
                    except SQLAlchemyError as rollback_error:  # a dead connection: the first error tells
                        log.debug("rollback after %s failed: %s", type(exc).__name__, type(rollback_error).__name__)
                finally:
                    uow._rolled_back()
                if isinstance(exc, DBAPIError) and _is_outage(exc, write=write):
                    if committing and write:
                        # The COMMIT may have reached the store before the connection went: "try again" could
                        # record the request twice.
                        raise self._unavailable(exc, StoreOutcomeUnknown()) from exc
                    raise self._unavailable(exc) from exc
                raise
            finally:
                with contextlib.suppress(SQLAlchemyError):  # never hide the error above behind a close's
                    session.close()
        uow._committed()

    def _unavailable(self, exc: Exception, error: StoreUnavailable | None = None) -> StoreUnavailable:
        """The caller gets a 503, not a 500; the log names the store (password masked) and the driver's
        error (with a traceback for SQLite's lock, which a nested write unit of work also produces)."""
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        reason = (str(cause).strip().splitlines() or [""])[0][:300]
        log.warning("metadata store %s unavailable: %s: %s", self.url, type(cause).__name__, reason,
                    exc_info=isinstance(exc, OperationalError) and _SQLITE_LOCKED in str(cause))
        return error if error is not None else StoreUnavailable()

    def upgrade(self) -> None:
        """Migrate the schema to the newest revision; safe when several processes start at once."""
        with self._migration_lock() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            head = ScriptDirectory.from_config(self._alembic_config(connection)).get_current_head()
            if connection.in_transaction():
                connection.commit()
            if current == head:
                log.debug("metadata store %s is at revision %s", self.url, head)
                return
            log.info("migrating metadata store %s from revision %s to %s", self.url, current, head)
            command.upgrade(self._alembic_config(connection), "head")
            if connection.in_transaction():
                connection.commit()

    def current_revision(self) -> str | None:
        """The revision the schema is at (None before the first `upgrade()`)."""
        with self._engine.connect() as connection:
            connection.execution_options(**{_WRITE_OPTION: False})
            return MigrationContext.configure(connection).get_current_revision()

    @staticmethod
    def head_revision() -> str | None:
        """The newest revision shipped with this code."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        config.set_main_option("path_separator", "os")
        return ScriptDirectory.from_config(config).get_current_head()

    def work_listener(self, on_work: Callable[[str], None]) -> WorkListener | None:
        """A listener calling `on_work(kind)` whenever any process records a due operation (PostgreSQL's
        LISTEN / NOTIFY, see `store.listen`); None on SQLite, where workers of other processes poll."""
        if self.dialect != "postgresql":
            return None
        return WorkListener(self._engine, on_work)

    def dispose(self) -> None:
        """Close every pooled connection (call at shutdown, and in a child after fork)."""
        self._engine.dispose()

    @contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        if self.dialect == "postgresql":
            with self._engine.connect() as connection:
                connection.execution_options(**{_WRITE_OPTION: True})
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
                connection.commit()
                try:
                    yield connection
                finally:
                    try:
                        if connection.in_transaction():
                            connection.rollback()
                        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
                        connection.commit()
                    except SQLAlchemyError as exc:
                        # Closing the connection ends the session, which releases the lock anyway.
                        log.warning("could not release the migration lock: %s", exc.__class__.__name__)
                        connection.invalidate()
            return
        lock_path = (
            None if self._sqlite_path is None else self._sqlite_path.with_name(self._sqlite_path.name + ".migrate.lock")
        )
        with _file_lock(lock_path), self._engine.connect() as connection:
            connection.execution_options(**{_WRITE_OPTION: True})
            yield connection

    @staticmethod
    def _alembic_config(connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        config.set_main_option("path_separator", "os")
        config.attributes["connection"] = connection
        return config


def _engine_for(url: str) -> tuple[Engine, Path | None]:
    """The SQLAlchemy engine for `url`, with Reddwarf's connection hooks, and the SQLite file if any."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise ValueError(f"unsupported SQLite driver {parsed.drivername!r}: use sqlite:///path")
        database = parsed.database or ""
        if database in ("", ":memory:"):
            # One shared connection, for tests and one-shot tools; never for several processes.
            engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
            _install_sqlite_hooks(engine, wal=False)
            return engine, None
        path = Path(database)
        if not path.is_absolute():
            raise ValueError("the SQLite path must be absolute: sqlite:////abs/path/reddwarf.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite gives its -wal and -shm files the mode of the database file: make that 0600 from the start
        # (an empty file is a valid new database), whatever the process umask.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        engine = create_engine(
            parsed.set(drivername="sqlite+pysqlite"),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        _install_sqlite_hooks(engine, wal=True)
        return engine, path
    if backend == "postgresql":
        if parsed.drivername not in ("postgresql", "postgresql+psycopg"):
            raise ValueError(f"unsupported PostgreSQL driver {parsed.drivername!r}: use postgresql+psycopg://")
        # A store host that does not answer must not hold a request (or a worker) for the kernel's TCP
        # timeout (minutes): libpq gives up after `connect_timeout` seconds (the URL may set its own).
        connect_args: dict[str, int] = {key: value for key, value in _PG_TCP_ARGS.items() if key not in parsed.query}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        engine = create_engine(
            parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True, pool_size=5, max_overflow=10,
            pool_timeout=PG_CONNECT_TIMEOUT_S, connect_args=connect_args,
        )
        _install_postgresql_hooks(engine)
        return engine, None
    raise ValueError(f"unsupported metadata store {backend!r}: use sqlite or postgresql+psycopg")


def _masked_url(url: URL) -> str:
    """`url` with any password masked, in its user part or its query (`?password=`, `?sslpassword=`)."""
    secret_keys = [key for key in url.query if key.lower() in _SECRET_QUERY_KEYS]
    if secret_keys:
        url = url.update_query_dict({key: "***" for key in secret_keys})
    return url.render_as_string(hide_password=True)


def _is_outage(exc: DBAPIError, *, write: bool) -> bool:
    """An error of the store rather than of the statement, which a retry later may not meet: the connection
    was lost (SQLAlchemy invalidated it), SQLite stayed locked past its busy timeout, PostgreSQL chose this
    transaction as a deadlock or serialization victim, or a write reached a server that is (after a
    failover) a read-only standby. A write in a read-only unit of work is not one."""
    if exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError) and _SQLITE_LOCKED in str(exc.orig):
        return True
    code = getattr(exc.orig, "sqlstate", None)
    return code in _PG_RETRYABLE or (write and code == _PG_READ_ONLY_TRANSACTION)


def _holds_secrets(engine: Engine) -> bool:
    """Does the store already hold a secret? (False for a new store, before its first migration.)"""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE_OPTION: False})
        if not inspect(connection).has_table("secrets"):
            return False
        found = connection.execute(text("SELECT 1 FROM secrets LIMIT 1")).first() is not None
        connection.rollback()
        return found


@contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive fcntl lock on `path` (released by the kernel if the process dies)."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_QUERY_ONLY = "reddwarf_query_only"


def _switch_to_wal(cursor: DBAPICursor) -> None:
    """Put the file in WAL mode, waiting out another process doing the same.

    The switch takes an exclusive lock, and SQLite answers SQLITE_BUSY at once (its busy handler is
    not called on that path) when a second process opens a new file at the same moment: two
    `reddwarf store upgrade`s, or a server and a worker started together. Retry until the deadline.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            message = str(error).lower()
            if ("locked" not in message and "busy" not in message) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _install_sqlite_hooks(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from pysqlite; the "begin" hook below emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:
                _switch_to_wal(cursor)
                # FULL: a commit is on disk before the API answers, so an accepted request survives a
                # power loss too, not only a process crash (NORMAL would be enough for the latter).
                cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = bool(connection.get_execution_options().get(_WRITE_OPTION, True))
        # The pooled connection remembers its mode: a statement less for most units of work.
        if connection.info.get(_QUERY_ONLY) is not (not write):
            connection.exec_driver_sql(f"PRAGMA query_only = {0 if write else 1}")
            connection.info[_QUERY_ONLY] = not write
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _install_postgresql_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if not connection.get_execution_options().get(_WRITE_OPTION, True):
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")

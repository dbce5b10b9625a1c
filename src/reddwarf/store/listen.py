"""Cross-process wake-up for new operations on a PostgreSQL store: LISTEN / NOTIFY.

`OperationRepository.enqueue` sends `pg_notify(CHANNEL, kind)` inside the transaction that records a due
operation; PostgreSQL delivers it when that transaction commits (never for one rolled back). Each process
with workers runs one `WorkListener`: a thread on a connection of its own, LISTENing on `CHANNEL`, that
calls `on_work(kind)` for every notification, so that a `reddwarf worker` process starts an operation that
an API process recorded at once instead of at its next poll. Polling stays the safety net: a notification
sent while the listener was reconnecting is lost, so after every (re)connection it calls `on_work("")`
("look for anything"). SQLite has no such channel; there, workers of other processes poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

CHANNEL: Final = "reddwarf_operations"
# How often the listening thread looks up from its connection to see whether it was told to stop.
_STOP_CHECK_S: Final = 0.25


class WorkListener:
    """Calls `on_work(kind)` when an operation of `kind` is recorded by any process sharing the store."""

    def __init__(self, engine: Engine, on_work: Callable[[str], None], *, retry_delay: float = 1.0) -> None:
        self._engine = engine
        self._on_work = on_work
        self._retry_delay = retry_delay
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="work-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_listening(self, timeout: float) -> bool:
        """Whether the listener is (or gets, within `timeout` seconds) connected and LISTENing."""
        return self._listening.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection = self._connect()
            except (psycopg.Error, SQLAlchemyError) as exc:
                log.warning("work listener: cannot connect to the store (%s); workers poll meanwhile",
                            type(exc).__name__)
                self._stop.wait(self._retry_delay)
                continue
            try:
                self._listen(connection)
            except psycopg.Error as exc:
                log.warning("work listener: connection lost (%s); reconnecting", type(exc).__name__)
                self._stop.wait(self._retry_delay)
            except Exception:  # loop boundary: the listener must outlive a bug; workers still poll meanwhile
                log.exception("work listener: unexpected error; reconnecting")
                self._stop.wait(self._retry_delay)
            finally:
                self._listening.clear()
                connection.close()

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        # A connection of its own, out of the pool's accounting: it stays open as long as the listener.
        pooled = self._engine.raw_connection()
        connection = pooled.driver_connection
        if not isinstance(connection, psycopg.Connection):
            pooled.close()
            raise TypeError(f"the store's driver connection is {type(connection).__name__}, not psycopg's")
        pooled.detach()
        try:
            connection.rollback()  # the pool's pre-ping began a transaction; LISTEN must not wait in one
            connection.autocommit = True
        except BaseException:
            connection.close()
            raise
        return connection

    def _listen(self, connection: psycopg.Connection[tuple[object, ...]]) -> None:
        connection.execute(f"LISTEN {CHANNEL}")
        self._on_work("")  # whatever was recorded while nobody listened
        self._listening.set()
        log.info("work listener: listening on %s; workers start new operations as they are recorded", CHANNEL)
        while not self._stop.is_set():
            for notification in connection.notifies(timeout=_STOP_CHECK_S):
                self._on_work(notification.payload)

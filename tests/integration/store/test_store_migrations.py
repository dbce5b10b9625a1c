"""Migrations: empty -> head on both backends, idempotent, safe when two processes start at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from reddwarf.store import Database
from reddwarf.store.tables import metadata

EXPECTED_TABLES = {
    "alembic_version",
    "root_history",
    "pool_slots",
    "instances",
    "secrets",
    "snapshots",
    "operations",
    "operation_steps",
    "replication_sets",
    "set_members",
    "addresses",
    "projects",
    "tokens",
    "leases",
    "events",
    "storage_reservations",
    "backups",
    "backup_strategies",
    "archived_logs",
}


def test_upgrade_creates_the_schema_at_head(empty_store_url: str, key_file: Path) -> None:
    database = Database.from_url(empty_store_url, key_file=key_file)
    try:
        assert database.current_revision() is None
        database.upgrade()
        assert database.current_revision() == Database.head_revision() == "0016"
        engine = create_engine(empty_store_url)
        try:
            assert set(inspect(engine).get_table_names()) == EXPECTED_TABLES
            # The migrations and the table definitions describe the same schema.
            with engine.connect() as connection:
                assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        finally:
            engine.dispose()
    finally:
        database.dispose()


def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    with db.unit_of_work() as uow:
        uow.events.add("r1", "created", "kept across upgrades")
    db.upgrade()
    assert db.current_revision() == Database.head_revision()
    with db.unit_of_work(write=False) as uow:
        assert [event.message for event in uow.events.list("r1")] == ["kept across upgrades"]


def test_two_processes_upgrading_at_once_both_succeed(
    empty_store_url: str, key_file: Path, race: Callable[[str, str, Path], list[str]]
) -> None:
    outputs = race("upgrade", empty_store_url, key_file)
    assert [output.strip() for output in outputs] == ["0016", "0016"]
    database = Database.from_url(empty_store_url, key_file=key_file)
    try:
        assert database.current_revision() == "0016"
        with database.unit_of_work() as uow:
            uow.events.add("r1", "created", "schema usable")
    finally:
        database.dispose()



def test_a_new_sqlite_file_opened_by_several_at_once_never_reports_locked(tmp_path: Path, key_file: Path) -> None:
    """Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is locked" at
    once (without its busy timeout) to the others opening it then: a server and workers started
    together on a new store. Without a retry, one try in five to eight failed here."""
    for attempt in range(60):
        url = f"sqlite:///{tmp_path / f'new-{attempt}.db'}"
        outcomes = _open_at_once(url, key_file, count=3)
        assert outcomes == [None, None, None], f"attempt {attempt}: {outcomes}"


def _open_at_once(url: str, key_file: Path, *, count: int) -> list[BaseException | None]:
    """Open the store at `url` from `count` threads released together; what each one met."""
    start = threading.Barrier(count)
    outcomes: list[BaseException | None] = [None] * count

    def open_store(index: int) -> None:
        start.wait()
        try:
            database = Database.from_url(url, key_file=key_file)
            try:
                assert database.current_revision() is None
            finally:
                database.dispose()
        except BaseException as error:  # handed to the test, which names the attempt
            outcomes[index] = error

    threads = [threading.Thread(target=open_store, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes

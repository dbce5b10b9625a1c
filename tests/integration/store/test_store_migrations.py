"""Migrations: empty -> head on both backends, idempotent, safe when two processes start at once."""

from __future__ import annotations

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
        assert database.current_revision() == Database.head_revision() == "0011"
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
    assert [output.strip() for output in outputs] == ["0011", "0011"]
    database = Database.from_url(empty_store_url, key_file=key_file)
    try:
        assert database.current_revision() == "0011"
        with database.unit_of_work() as uow:
            uow.events.add("r1", "created", "schema usable")
    finally:
        database.dispose()

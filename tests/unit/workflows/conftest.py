"""Fixtures of the workflow kernel tests: a real SQLite store (a file, WAL, as in production)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reddwarf.store.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'reddwarf.db'}", key_file=tmp_path / "secret.key")
    database.upgrade()
    yield database
    database.dispose()

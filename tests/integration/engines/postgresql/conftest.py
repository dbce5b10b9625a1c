"""Fixtures of the PostgreSQL integration tests: the engine and its version (the OS user and
scratch directory come from ../conftest.py), PostgreSQL 15.

The harness itself (what a runtime would do, minimally) lives in `pg_harness.py`.
"""

from __future__ import annotations

import pytest

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.engines.postgresql import PostgresqlEngine, PostgresqlSettings


@pytest.fixture(scope="module")
def engine() -> PostgresqlEngine:
    return PostgresqlEngine(PostgresqlSettings())


@pytest.fixture(scope="module")
def pg15(engine: PostgresqlEngine) -> DatastoreVersion:
    found = [v for v in engine.versions() if v.name == "15"]
    if not found:
        pytest.skip("PostgreSQL 15 server binaries are not installed")
    return found[0]

"""Fixtures of the MariaDB integration tests: the engine and its version (the OS user and
scratch directory come from ../conftest.py), MariaDB 10.11.

The harness itself (what a runtime would do, minimally) lives in `mariadb_harness.py`.
"""

from __future__ import annotations

import pytest

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.engines.mariadb import MariadbEngine, MariadbSettings


@pytest.fixture(scope="module")
def engine() -> MariadbEngine:
    return MariadbEngine(MariadbSettings())


@pytest.fixture(scope="module")
def mariadb1011(engine: MariadbEngine) -> DatastoreVersion:
    found = [v for v in engine.versions() if v.name == "10.11"]
    if not found:
        pytest.skip("MariaDB 10.11 server binaries are not installed")
    return found[0]

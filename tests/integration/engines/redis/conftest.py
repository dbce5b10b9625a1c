"""Fixtures of the Redis integration tests: the engine and Redis 7.0 (the OS user comes from ../conftest.py).

The harness itself (what a runtime would do, minimally) lives in `redis_harness.py`; servers live under
the shared `scratch_root` fixture, which unprivileged users can traverse.
"""

from __future__ import annotations

import pytest

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.engines.redis import RedisEngine, RedisSettings


@pytest.fixture(scope="module")
def engine() -> RedisEngine:
    return RedisEngine(RedisSettings())


@pytest.fixture(scope="module")
def redis70(engine: RedisEngine) -> DatastoreVersion:
    found = [v for v in engine.versions() if v.name == "7.0"]
    if not found:
        pytest.skip("Redis 7.0 (redis-server) is not installed")
    return found[0]

"""Fixtures of the Redis integration tests: an OS user, the engine, Redis 7.0.

The harness itself (what a runtime would do, minimally) lives in `redis_harness.py`; servers live under
the shared `scratch_root` fixture, which unprivileged users can traverse.
"""

from __future__ import annotations

import pwd
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from redis_harness import OsUser

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.engines.redis import RedisEngine, RedisSettings


@pytest.fixture(scope="module")
def os_user() -> Iterator[OsUser]:
    """An unprivileged system user for this module's servers; removed at the end."""
    name = f"rdtest{secrets.token_hex(4)}"
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(name)
    try:
        yield OsUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def engine() -> RedisEngine:
    return RedisEngine(RedisSettings())


@pytest.fixture(scope="module")
def redis70(engine: RedisEngine) -> DatastoreVersion:
    found = [v for v in engine.versions() if v.name == "7.0"]
    if not found:
        pytest.skip("Redis 7.0 (redis-server) is not installed")
    return found[0]

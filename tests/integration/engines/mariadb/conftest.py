"""Fixtures of the MariaDB integration tests: an OS user, a scratch directory, the engine, MariaDB 10.11.

The harness itself (what a runtime would do, minimally) lives in `mariadb_harness.py`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mariadb_harness import OsUser

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.engines.mariadb import MariadbEngine, MariadbSettings

SCRATCH_BASE = Path(os.environ.get("REDDWARF_TEST_SCRATCH", "/var/tmp/reddwarf-tests"))


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
def module_scratch() -> Iterator[Path]:
    """A 0755 directory under the shared scratch base, for everything this module's servers touch."""
    SCRATCH_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    SCRATCH_BASE.chmod(0o755)
    path = SCRATCH_BASE / secrets.token_hex(4)
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def engine() -> MariadbEngine:
    return MariadbEngine(MariadbSettings())


@pytest.fixture(scope="module")
def mariadb1011(engine: MariadbEngine) -> DatastoreVersion:
    found = [v for v in engine.versions() if v.name == "10.11"]
    if not found:
        pytest.skip("MariaDB 10.11 server binaries are not installed")
    return found[0]

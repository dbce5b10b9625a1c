"""Fixtures every engine's integration tests share: a throwaway OS user and a scratch directory per module."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.engine_harness import OsUser, throwaway_os_user

SCRATCH_BASE = Path(os.environ.get("REDDWARF_TEST_SCRATCH", "/var/tmp/reddwarf-tests"))


@pytest.fixture(scope="module")
def os_user() -> Iterator[OsUser]:
    """An unprivileged system user for this module's servers; removed at the end."""
    with throwaway_os_user() as user:
        yield user


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

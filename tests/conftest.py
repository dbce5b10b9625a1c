"""Fixtures shared by every test layer.

Database servers run as unprivileged OS users that cannot traverse /root or pytest's 0700 tmp dirs,
so anything a server touches lives under `scratch_root` (/var/tmp/reddwarf-tests, 0755).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRATCH_BASE = Path(os.environ.get("REDDWARF_TEST_SCRATCH", "/var/tmp/reddwarf-tests"))


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A fresh 0755 directory that unprivileged server users can traverse; removed afterwards."""
    SCRATCH_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    SCRATCH_BASE.chmod(0o755)
    path = SCRATCH_BASE / secrets.token_hex(4)
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)

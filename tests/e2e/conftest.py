"""One real Reddwarf server (API + embedded worker) per e2e module, on a private address sub-pool."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SCRATCH_BASE
from tests.support.server import ReddwarfProcesses, reddwarf_processes


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    SCRATCH_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = SCRATCH_BASE / f"e2e-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    try:
        with reddwarf_processes(root, "127.0.90.0/24") as procs:
            procs.start_server()
            yield procs
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def unique_name() -> str:
    return "db-" + secrets.token_hex(3)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "e2e":
            item.add_marker(pytest.mark.slow)

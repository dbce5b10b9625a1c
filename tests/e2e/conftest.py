"""One real Reddwarf server (API + embedded worker) per e2e module, on a private address sub-pool."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ReddwarfProcesses, running_plane


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("e2e", "127.0.90.0/24") as procs:
        yield procs


@pytest.fixture
def unique_name() -> str:
    return "db-" + secrets.token_hex(3)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "e2e":
            item.add_marker(pytest.mark.slow)

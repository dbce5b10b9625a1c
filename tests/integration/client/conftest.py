"""Fixtures of the client integration tests: the real API over HTTP (see client_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from client_server import ApiServer, serve_api


@pytest.fixture
def api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    for name in ("REDDWARF_ENDPOINT", "REDDWARF_TOKEN", "REDDWARF_PROJECT", "REDDWARF_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    with serve_api(tmp_path) as server:
        yield server

"""A metadata store that went away: requests get Trove's 503 at once, not a 500 or a hang.

The API answers `serviceUnavailable` with a message that names no host or credential, and the log names the
store with its password masked; a PostgreSQL host that accepts connections but never answers fails them
after the store's connect timeout (10 s, or the URL's own) instead of psycopg's two minutes.
"""

from __future__ import annotations

import logging
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from reddwarf.api.app import create_app
from reddwarf.domain.errors import StoreUnavailable
from reddwarf.services.context import ServiceContext
from reddwarf.settings import Settings
from reddwarf.store import Database
from reddwarf.store import database as database_module
from reddwarf.store.secrets import SecretCipher

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

PASSWORD = "s3cret-store-password"
FAST_ENOUGH_S = 60  # psycopg's own default is 130 s; the timeouts under test are 1-2 s


def store_at(port: int, key_file: Path, query: str = "") -> Database:
    SecretCipher(key_file)  # the host's key file exists, so opening the store does not connect yet
    return Database.from_url(
        f"postgresql+psycopg://reddwarf:{PASSWORD}@127.0.0.1:{port}/reddwarf{query}", key_file=key_file
    )


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener completes TCP handshakes (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_a_request_while_the_store_is_down_gets_503_and_the_log_masks_the_password(
    closed_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = store_at(closed_port, tmp_path / "secret.key")
    try:
        app = create_app(ServiceContext.build(Settings(state_dir=tmp_path), db, {}))
        with caplog.at_level(logging.WARNING), TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/v1.0/p1/instances", headers={"X-Auth-Token": "any-token"})
    finally:
        db.dispose()
    assert response.status_code == 503, response.text
    fault = response.json()["serviceUnavailable"]
    assert fault["code"] == 503
    assert "metadata store is unavailable" in fault["message"]
    assert "127.0.0.1" not in response.text
    assert f"127.0.0.1:{closed_port}/reddwarf unavailable" in caplog.text  # which store, for the operator
    assert PASSWORD not in caplog.text


def connect_time(db: Database) -> float:
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable), db.unit_of_work(write=False) as uow:
            uow.operations.any_due()
    finally:
        db.dispose()
    return time.monotonic() - started


@pytest.mark.timeout(180)
def test_a_store_host_that_never_answers_fails_after_the_connect_timeout(
    silent_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "PG_CONNECT_TIMEOUT_S", 2)
    assert connect_time(store_at(silent_port, tmp_path / "secret.key")) < FAST_ENOUGH_S


@pytest.mark.timeout(180)
def test_the_store_urls_own_connect_timeout_wins(
    silent_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "PG_CONNECT_TIMEOUT_S", 150)
    assert connect_time(store_at(silent_port, tmp_path / "secret.key", "?connect_timeout=1")) < FAST_ENOUGH_S


def test_a_password_in_the_store_urls_query_is_masked_too(tmp_path: Path) -> None:
    db = store_at(1, tmp_path / "secret.key", f"?sslmode=disable&password={PASSWORD}x")
    try:
        assert PASSWORD not in db.url and "sslmode=disable" in db.url
    finally:
        db.dispose()

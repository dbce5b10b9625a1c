"""Fixtures of the metadata store tests: every store test runs against SQLite and a real PostgreSQL.

The PostgreSQL server (tests/support/metadata_postgres.py) is started once per session. Each test gets a
fresh database on it, dropped afterwards; the server and its files are removed at the end of the session.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.metadata_postgres import (
    PostgresServer,
    create_database,
    drop_database,
    metadata_postgres,
    unavailable,
)

from reddwarf.store import Database
from reddwarf.store.tables import metadata

RACE_HELPER = Path(__file__).with_name("store_race_helper.py")
SRC_DIR = Path(__file__).resolve().parents[3] / "src"

Race = Callable[[str, str, Path], list[str]]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with metadata_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty store (not migrated), on each backend in turn."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = create_database(server)
    yield server.url(name)
    drop_database(server, name)


@pytest.fixture(scope="session")
def shared_postgres_store(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated PostgreSQL database for the repository tests, emptied after each test (fast)."""
    name = create_database(postgres_server)
    url = postgres_server.url(name)
    database = Database.from_url(url, key_file=tmp_path_factory.mktemp("pg-key") / "secret.key")
    database.upgrade()
    database.dispose()
    yield url
    drop_database(postgres_server, name)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of the store behind `db` (SQLite: a file under tmp_path)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'reddwarf.db'}"
        return
    url: str = request.getfixturevalue("shared_postgres_store")
    yield url
    server: PostgresServer = request.getfixturevalue("postgres_server")
    database = url.rsplit("/", 1)[1]
    tables = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with server.connect(database) as connection:
        connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "secret.key"


@pytest.fixture
def db(store_url: str, key_file: Path) -> Iterator[Database]:
    """A migrated, empty metadata store on each backend."""
    database = Database.from_url(store_url, key_file=key_file)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def race(tmp_path: Path) -> Race:
    """`race(mode, url, key_file)`: run two helper processes on one store, released at the same moment,
    and return each one's stdout (see store_race_helper.py for the modes)."""

    def run(mode: str, url: str, key_file: Path) -> list[str]:
        workdir = tmp_path / f"race-{secrets.token_hex(3)}"
        workdir.mkdir()
        go_file = workdir / "go"
        env = dict(os.environ, REDDWARF_TEST_STORE_URL=url)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
        ready_files = [workdir / f"ready-{index}" for index in range(2)]
        children = [
            subprocess.Popen(
                [sys.executable, str(RACE_HELPER), mode, str(key_file), str(ready), str(go_file)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for ready in ready_files
        ]
        try:
            deadline = time.monotonic() + 60
            while not all(ready.exists() for ready in ready_files):
                assert time.monotonic() < deadline, "race helpers did not start"
                died = [child for child in children if child.poll() is not None]
                if died:
                    raise AssertionError(f"a race helper died early: {died[0].communicate()[1]}")
                time.sleep(0.01)
            go_file.touch()
            outputs = []
            for child in children:
                stdout, stderr = child.communicate(timeout=60)
                assert child.returncode == 0, stderr
                outputs.append(stdout)
            return outputs
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
                for stream in (child.stdout, child.stderr):  # closed on every path, read or not
                    if stream is not None:
                        stream.close()

    return run

"""Fixtures of the metadata store tests: every store test runs against SQLite and a real PostgreSQL.

The PostgreSQL server is started once per session from the installed binaries, as the unprivileged OS user
`reddwarf-test-meta` (PostgreSQL refuses root), with its data under /var/tmp/reddwarf-tests/meta-<random>,
listening on 127.0.0.1 only, on a free port, with scram-sha-256 authentication. Each test gets a fresh
database on it, dropped afterwards; the server and its files are removed at the end of the session.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from tests.conftest import SCRATCH_BASE

from reddwarf.store import Database
from reddwarf.store.tables import metadata

PG_BIN = Path(os.environ.get("REDDWARF_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "reddwarf-test-meta"
PG_SUPERUSER = "reddwarf"
START_DEADLINE_S = 60.0
RACE_HELPER = Path(__file__).with_name("store_race_helper.py")
SRC_DIR = Path(__file__).resolve().parents[3] / "src"

Race = Callable[[str, str, Path], list[str]]


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )


def _ensure_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                PG_OS_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        # 9: created meanwhile by a parallel test session.
        if result.returncode not in (0, 9):
            raise RuntimeError(f"useradd {PG_OS_USER} failed: {result.stderr.strip()}") from None
        return pwd.getpwnam(PG_OS_USER)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(server: PostgresServer, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}: {log_file.read_text()[-2000:]}")
        try:
            with server.connect():
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if not (PG_BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    if os.geteuid() != 0:
        pytest.skip("starting a PostgreSQL server as another OS user needs root")
    account = _ensure_os_user()
    SCRATCH_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    SCRATCH_BASE.chmod(0o755)
    base = SCRATCH_BASE / f"meta-{secrets.token_hex(4)}"
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    data_dir = base / "data"
    data_dir.mkdir(mode=0o700)
    password = secrets.token_urlsafe(24)
    password_file = base / "pwfile"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    for path in (data_dir, password_file):
        os.chown(path, account.pw_uid, account.pw_gid)
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                PG_SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={password_file}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            user=account.pw_uid,
            group=account.pw_gid,
            cwd=base,
            capture_output=True,
            check=True,
        )
        password_file.unlink()
        log_file = base / "postgres.log"
        for _attempt in range(3):
            server = PostgresServer("127.0.0.1", _free_port(), PG_SUPERUSER, password)
            with log_file.open("ab") as log:
                process = subprocess.Popen(
                    [
                        str(PG_BIN / "postgres"),
                        "-D",
                        str(data_dir),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"port={server.port}",
                        "-c",
                        "unix_socket_directories=",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=60",
                        "-c",
                        "shared_buffers=32MB",
                    ],
                    user=account.pw_uid,
                    group=account.pw_gid,
                    cwd=base,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                _wait_ready(server, process, log_file)
            except RuntimeError:
                # Most likely the port was taken between the probe and the bind: try another one.
                process.wait()
                process = None
                continue
            break
        else:
            raise RuntimeError(f"postgres did not start: {log_file.read_text()[-2000:]}")
        yield server
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _create_database(server: PostgresServer) -> str:
    name = f"store_{secrets.token_hex(6)}"
    with server.connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(server: PostgresServer, name: str) -> None:
    with server.connect() as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def empty_store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty store (not migrated), on each backend in turn."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = _create_database(server)
    yield server.url(name)
    _drop_database(server, name)


@pytest.fixture(scope="session")
def shared_postgres_store(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated PostgreSQL database for the repository tests, emptied after each test (fast)."""
    name = _create_database(postgres_server)
    url = postgres_server.url(name)
    database = Database.from_url(url, key_file=tmp_path_factory.mktemp("pg-key") / "secret.key")
    database.upgrade()
    database.dispose()
    yield url
    _drop_database(postgres_server, name)


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

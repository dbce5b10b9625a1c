"""A real PostgreSQL server for Reddwarf's metadata store in tests (store tests and end-to-end planes).

Started from the installed binaries as the unprivileged OS user `reddwarf-test-meta` (PostgreSQL refuses
root), with its data under /var/tmp/reddwarf-tests/meta-<random>, listening on 127.0.0.1 only, on a free
port, with scram-sha-256 authentication; stopped and removed on exit. Durability settings are off: a test
server never survives a crash of the host.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.conftest import SCRATCH_BASE

PG_BIN = Path(os.environ.get("REDDWARF_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "reddwarf-test-meta"
PG_SUPERUSER = "reddwarf"
START_DEADLINE_S = 60.0


def unavailable() -> str | None:
    """Why no metadata PostgreSQL can run here (a reason to skip), or None."""
    if not (PG_BIN / "postgres").exists():
        return f"PostgreSQL binaries not found in {PG_BIN}"
    if os.geteuid() != 0:
        return "starting a PostgreSQL server as another OS user needs root"
    return None


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


@contextmanager
def metadata_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for metadata stores, stopped and removed on exit (needs root and the binaries:
    check `unavailable()` first)."""
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


def create_database(server: PostgresServer) -> str:
    name = f"store_{secrets.token_hex(6)}"
    with server.connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(server: PostgresServer, name: str) -> None:
    with server.connect() as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

"""A real S3-protocol server for tests of the s3 backup target: moto's `moto_server` on a free loopback port.

`moto_server` (a session fixture) starts one server for the whole run and stops it at the end; `s3_bucket`
creates a fresh bucket per test in it. Other test packages use them by importing them into their conftest:

    from tests.support.s3 import moto_server, s3_bucket  # noqa: F401  (pytest fixtures)

moto keeps everything in memory (about 340 MB of RSS after one object, uploads at ~70 MB/s): keep data small.
The credentials are moto's dummies; nothing here reaches a real S3.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.support.server import free_port

MOTO_SERVER = str(Path(sys.executable).with_name("moto_server"))
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
ACCESS_KEY_ID = "moto-test-access-key"
SECRET_ACCESS_KEY = "moto-test-secret-key-never-logged"
REGION = "us-east-1"


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    process: subprocess.Popen[bytes]

    @functools.cached_property
    def client(self) -> Any:
        """One boto3 client for the tests' own look-ups (building one costs ~0.15 s)."""
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
        )


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=1.0)
        return True
    return False


@contextlib.contextmanager
def running_moto_server() -> Iterator[MotoServer]:
    """`moto_server` on 127.0.0.1 and a free port, answering before this yields; stopped afterwards."""
    # Its request log goes to a file: a pipe nobody drains would fill and stop the server.
    with tempfile.TemporaryFile() as log:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        process = subprocess.Popen(
            [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _answers(url):
                if process.poll() is not None:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"moto_server exited with {process.returncode} before answering: {output}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer on {url} within {START_TIMEOUT:.0f}s")
                time.sleep(0.1)
            yield MotoServer(endpoint_url=url, process=process)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with running_moto_server() as server:
        yield server


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    """A new, empty bucket in the session's moto server."""
    name = f"reddwarf-test-{secrets.token_hex(4)}"
    moto_server.client.create_bucket(Bucket=name)
    return name

"""Helpers of the Redis integration harness (see conftest.py): addresses, OS user, one running server.

It does what a runtime would, minimally: 0700 directories owned by an unprivileged user under a 0755
scratch directory, the workload's init files written once and its files before every start, `init` and
`server` run as that user in a session of their own, readiness polled through the engine's probe with a
deadline, and `stop_signal` sent to the process group to stop. It also reads what the tests look at:
the server's log, its listening sockets (from /proc) and plain redis-py clients.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from tests.support.engine_harness import HarnessServer, OsUser
from tests.support.engine_harness import free_address as shared_free_address

from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines.redis import RedisEngine
from reddwarf.engines.redis.config import LOG_FILE, SOCKET_FILE

ADDRESS_POOL = ipaddress.ip_network("127.0.80.0/24")
PORT = 6379
READY_DEADLINE = 30.0
FLAVOR = Flavor(id="1", name="tiny", ram_mb=256, vcpus=1)


def free_address(port: int = PORT) -> str:
    return shared_free_address(str(ADDRESS_POOL), port)


def wait_for(condition: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll `condition()` every 20 ms until it is true or `deadline` seconds pass."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.02)


def client(placement: Placement, user: str | None, password: str | None, timeout: float = 5.0) -> redis.Redis:
    """A plain redis-py client over TCP to the placement, with no retries (None, None: unauthenticated)."""
    return redis.Redis(
        host=placement.address,
        port=placement.port,
        username=user,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )


def _listening_inodes() -> dict[int, tuple[str, int]]:
    """inode -> (address, port) of every listening TCP socket of this network namespace."""
    found: dict[int, tuple[str, int]] = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError), open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                local, state, inode = fields[1], fields[3], int(fields[9])
                if state != "0A":  # TCP_LISTEN
                    continue
                hex_addr, hex_port = local.split(":")
                raw = bytes.fromhex(hex_addr)
                # /proc prints the address as host-order 32-bit words.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found[inode] = (socket.inet_ntop(family, words), int(hex_port, 16))
    return found


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs process `pid` listens on over TCP."""
    inodes: set[int] = set()
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(entry)
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:[") : -1]))
    return {where for inode, where in _listening_inodes().items() if inode in inodes}


class Server(HarnessServer):
    """One Redis server run by the harness: its own log file beside the process output (server.log)."""

    engine: RedisEngine
    ready_deadline = READY_DEADLINE

    @property
    def log_path(self) -> Path:
        return Path(self.placement.log_dir) / LOG_FILE

    @property
    def stdout_path(self) -> Path:
        return Path(self.placement.log_dir) / self.server_log

    @property
    def socket_path(self) -> Path:
        return Path(self.placement.socket_dir) / SOCKET_FILE

    def log_text(self) -> str:
        parts = [path.read_text(errors="replace") for path in (self.stdout_path, self.log_path) if path.exists()]
        return "\n".join(parts)

    def admin(self) -> redis.Redis:
        return client(self.placement, self.engine.admin_user, self.admin_password.reveal())


def make_placement(root: Path, user: OsUser, address: str, name: str | None = None) -> Placement:
    base = root / (name or secrets.token_hex(3))
    return Placement(
        instance_id=base.name,
        os_user=user.name,
        address=address,
        port=PORT,
        data_dir=str(base / "data"),
        config_dir=str(base / "config"),
        log_dir=str(base / "log"),
        run_dir=str(base / "run"),
        socket_dir=str(base / "s"), scratch_dir=str(base / "t"),
    )


def build_server(
    engine: RedisEngine, version: DatastoreVersion, user: OsUser, root: Path, spec: InstanceSpec
) -> Server:
    """A prepared (directories made), not yet initialised server on a free address of the test pool."""
    root.mkdir(mode=0o755, exist_ok=True)
    placement = make_placement(root, user, free_address())
    admin_password = Secret(secrets.token_urlsafe(24))
    workload = engine.workload(spec, version, FLAVOR, placement, admin_password)
    server = Server(engine, placement, workload, admin_password, user)
    server.prepare()
    return server


@contextlib.contextmanager
def running_server(
    engine: RedisEngine, version: DatastoreVersion, user: OsUser, root: Path, spec: InstanceSpec
) -> Iterator[Server]:
    """Prepare, initialise and start one server; yield it once the admin probe answers; stop it at the end."""
    server = build_server(engine, version, user, root, spec)
    server.initialise()
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop(signal.SIGKILL)

"""The failover watch's ping (`busy_is_alive`): a server that answers that every connection slot is taken is
alive, whatever the engine; without the flag (the health sweep's and a create's "accepts connections") it is
not. Anyone on the host can fill a server's slots: that must never fail a healthy primary over. Each engine's
real answer is played by a listener of this process (root), which the listener-owner check accepts for the OS
user `root`."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from reddwarf.domain.workload import Placement
from reddwarf.engines.mariadb import admin as mariadb_admin
from reddwarf.engines.postgresql import admin as postgresql_admin
from reddwarf.engines.redis import admin as redis_admin

ADDRESS = "127.0.187.1"


def _pg_error(code: bytes) -> bytes:
    fields = b"SFATAL\0VFATAL\0C" + code + b"\0Msorry, too many clients already\0\0"
    return b"E" + struct.pack("!I", 4 + len(fields)) + fields


def _maria_error(code: int) -> bytes:
    payload = b"\xff" + code.to_bytes(2, "little") + b"Too many connections"
    return len(payload).to_bytes(3, "little") + b"\0" + payload


ANSWERS = {
    "postgresql": (_pg_error(b"53300"), _pg_error(b"57P03")),  # full; starting up
    "mariadb": (_maria_error(1040), _maria_error(1129)),  # full; host blocked
    "redis": (b"-ERR max number of clients reached\r\n", b"-LOADING Redis is loading the dataset\r\n"),
}
PINGS: dict[str, Callable[..., bool]] = {
    "postgresql": lambda p, **kw: postgresql_admin.ping(p, "reddwarf_admin", **kw),
    "mariadb": mariadb_admin.ping,
    "redis": redis_admin.ping,
}


class Server:
    """Answers every connection with `answer` once it has read what the client sends first (or at once)."""

    def __init__(self, answer: bytes, reads_first: bool) -> None:
        self.answer, self.reads_first = answer, reads_first
        self.sock = socket.socket()
        self.sock.bind((ADDRESS, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                if self.reads_first:
                    conn.recv(1024)
                conn.sendall(self.answer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[bytes, bool], Placement]]:
    servers: list[Server] = []

    def start(answer: bytes, reads_first: bool) -> Placement:
        server = Server(answer, reads_first)
        servers.append(server)
        return Placement(instance_id="x", os_user="root", address=ADDRESS, port=server.port, data_dir="/nonexistent",
                         config_dir="/nonexistent", log_dir="/nonexistent", run_dir="/nonexistent",
                         socket_dir="/nonexistent", scratch_dir="/nonexistent")

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("engine", sorted(ANSWERS))
def test_a_server_whose_slots_are_all_taken_is_alive_for_the_failover_watch_only(
    serve: Callable[[bytes, bool], Placement], engine: str
) -> None:
    full, other_error = ANSWERS[engine]
    reads_first = engine != "mariadb"  # MariaDB speaks first
    ping = PINGS[engine]
    placement = serve(full, reads_first)
    assert ping(placement, timeout=2.0, busy_is_alive=True) is True
    assert ping(placement, timeout=2.0) is False  # it does not accept this connection
    other = serve(other_error, reads_first)  # any other refusal is not an answer that it serves
    assert ping(other, timeout=2.0, busy_is_alive=True) is False

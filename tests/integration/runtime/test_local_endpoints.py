"""The local runtime's endpoint table with real nftables (docs/failover.md "The writer endpoint"): a client on
this host that connects to an endpoint reaches the member it routes to, and after the table is rewritten new
connections reach the new member while one made before stays where it was (fencing must end it); the control
plane's marked sockets are never translated; clearing the table leaves the address unserved; two
installations' tables do not touch each other."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from reddwarf.runtimes.local.endpoints import Endpoints, Route, clear_tables_of, mark_control, table_name

A, B, C, ENDPOINT = "127.0.186.1", "127.0.186.2", "127.0.186.3", "127.0.186.10"


class Member:
    """A TCP server that answers each message of every connection with its name."""

    def __init__(self, address: str, port: int, name: bytes) -> None:
        self.server = socket.create_server((address, port))
        self.name = name
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening (a shutdown wakes the thread blocked in accept) and let the thread end."""
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while conn.recv(16):
                    conn.sendall(self.name)
            except OSError:
                return


def _who(port: int, *, marked: bool = False, address: str = ENDPOINT) -> bytes:
    with socket.socket() as sock:
        if marked:
            mark_control(sock)
        sock.settimeout(2)
        sock.connect((address, port))
        sock.sendall(b"?")
        return sock.recv(16)


@pytest.fixture
def port() -> int:
    with socket.socket() as probe:
        probe.bind((A, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def endpoints() -> Iterator[Endpoints]:
    table = Endpoints(table_name(f"test_{secrets.token_hex(4)}"))
    try:
        yield table
    finally:
        table.clear()


@pytest.fixture
def members() -> Iterator[list[Member]]:
    made: list[Member] = []
    try:
        yield made
    finally:
        for member in made:
            member.close()


def test_an_endpoint_follows_its_route_and_a_kept_connection_stays(
    endpoints: Endpoints, members: list[Member], port: int
) -> None:
    members.append(Member(A, port, b"A"))
    members.append(Member(B, port, b"B"))
    endpoints.apply([Route(ENDPOINT, port, ((A, port),))])
    assert _who(port) == b"A"
    with socket.create_connection((ENDPOINT, port), timeout=2) as kept:
        kept.sendall(b"?")
        assert kept.recv(16) == b"A"
        endpoints.apply([Route(ENDPOINT, port, ((B, port),))])
        assert _who(port) == b"B"  # a new connection: the new member
        kept.sendall(b"?")
        assert kept.recv(16) == b"A"  # the old one stays with the old member until it is ended
    with pytest.raises(ConnectionRefusedError):  # the control plane reaches the address itself
        _who(port, marked=True)
    endpoints.clear()
    with pytest.raises(ConnectionRefusedError):
        _who(port)


def test_a_member_at_its_own_address_needs_no_rule_and_tables_stay_apart(
    endpoints: Endpoints, members: list[Member], port: int
) -> None:
    members.append(Member(A, port, b"A"))
    members.append(Member(C, port, b"C"))
    other = Endpoints(table_name(f"test_{secrets.token_hex(4)}"))
    try:
        endpoints.apply([Route(A, port, ((A, port),))])
        assert _who(port, address=A) == b"A"
        other.apply([Route(ENDPOINT, port, ((C, port),))])
        endpoints.apply([])  # rewriting one installation's table leaves the other's routes
        assert _who(port) == b"C"
    finally:
        other.clear()


def test_a_reader_endpoint_spreads_new_connections_over_its_members(
    endpoints: Endpoints, members: list[Member], port: int
) -> None:
    members.append(Member(A, port, b"A"))
    members.append(Member(B, port, b"B"))
    endpoints.apply([Route(ENDPOINT, port, ((A, port), (B, port)))])
    answers = [_who(port) for _ in range(6)]
    assert sorted(set(answers)) == [b"A", b"B"]
    assert answers.count(b"A") == answers.count(b"B")  # in turn, not by chance


def test_a_throwaway_installations_tables_are_cleared_by_its_prefix_alone(endpoints: Endpoints, port: int) -> None:
    prefix = f"rq{secrets.token_hex(3)}-"
    mine = [Endpoints(table_name(f"{prefix}/var/tmp/{n}")) for n in ("a", "b")]
    for table in mine:
        table.apply([Route(ENDPOINT, port, ((A, port),))])
    endpoints.apply([Route(ENDPOINT, port + 1, ((A, port),))])
    assert sorted(clear_tables_of(prefix)) == sorted(t.table for t in mine)
    listed = subprocess.run(["nft", "list", "tables", "ip"], capture_output=True, text=True, check=True).stdout
    assert endpoints.table in listed and not any(t.table in listed for t in mine)


def test_a_refused_endpoint_resets_every_connection_but_the_control_planes(
    endpoints: Endpoints, members: list[Member], port: int
) -> None:
    # Someone took a fenced primary's address while its set fails over: a client reaching for it gets a reset
    # and sends nothing there; the control plane still reaches whoever listens, to judge it.
    members.append(Member(A, port, b"squatter"))
    with socket.create_connection((A, port), timeout=2) as kept:  # made before: it goes on
        endpoints.apply([Route(A, port, ())])
        with pytest.raises(ConnectionRefusedError):
            _who(port, address=A)
        kept.sendall(b"?")
        assert kept.recv(16) == b"squatter"
    assert _who(port, marked=True, address=A) == b"squatter"
    endpoints.apply([])
    assert _who(port, address=A) == b"squatter"

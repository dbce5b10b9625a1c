"""`reddwarf.engines.peer` against real sockets served by other OS users: who is at the other end."""

from __future__ import annotations

import random
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.engine_harness import OsUser, free_address, throwaway_os_user
from tests.support.squatter import owned_dir, start_squatter

from reddwarf.engines import peer

POOL = "127.0.83.0/24"


@pytest.fixture(scope="module")
def other_user() -> Iterator[OsUser]:
    with throwaway_os_user() as user:
        yield user


def test_a_unix_socket_served_by_another_uid_is_refused_before_anything_is_sent(
    os_user: OsUser, other_user: OsUser, module_scratch: Path
) -> None:
    planted = owned_dir(str(module_scratch / "planted"), other_user)
    squatter = start_squatter(other_user, "redis", unix=f"{planted}/server.sock")
    try:
        squatter.wait_listening(10)
        with pytest.raises(peer.WrongPeer) as caught:
            peer.connect_unix(f"{planted}/server.sock", os_user.uid, timeout=2.0)
        assert caught.value.uid == other_user.uid
        with peer.connect_unix(f"{planted}/server.sock", other_user.uid, timeout=2.0) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(16) == b"+OK\r\n"
        squatter.wait_connections(2)
    finally:
        squatter.stop()
    assert squatter.received == b"PING\r\n"  # only from the connection whose peer was the expected one


def test_a_tcp_listener_is_attributed_to_the_user_who_made_it(os_user: OsUser, other_user: OsUser) -> None:
    port = random.randint(20000, 29999)
    address = free_address(POOL, port)
    squatter = start_squatter(other_user, "redis", tcp=(address, port))
    try:
        squatter.wait_listening(10)
        with peer.connect_tcp_owned(address, port, other_user.uid, timeout=2.0) as sock:
            assert peer.tcp_listener_uid(sock) == other_user.uid
        with pytest.raises(peer.WrongPeer) as caught:
            peer.connect_tcp_owned(address, port, os_user.uid, timeout=2.0)
        assert caught.value.uid == other_user.uid
        squatter.wait_connections(2)
    finally:
        squatter.stop()
    assert squatter.received == b""


def test_a_listener_of_root_is_not_the_instance_user(os_user: OsUser) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        port = random.randint(20000, 29999)
        listener.bind((free_address(POOL, port), port))
        listener.listen(1)
        with pytest.raises(peer.WrongPeer) as caught:
            peer.connect_tcp_owned(*listener.getsockname(), os_user.uid, timeout=2.0)
        assert caught.value.uid == 0


def _hex4(address: bytes) -> str:
    return "".join(
        f"{int.from_bytes(address[i:i + 4], sys.byteorder):08X}" for i in range(0, len(address), 4)
    )


def test_proc_net_tables_are_read_for_ipv4_ipv6_and_mapped_addresses(tmp_path: Path) -> None:
    v4 = _hex4(socket.inet_aton("127.0.1.5")) + ":1538"  # 127.0.1.5:5432
    client = _hex4(socket.inet_aton("127.0.0.1")) + ":9C40"  # 127.0.0.1:40000
    mapped = _hex4(socket.inet_pton(socket.AF_INET6, "::ffff:127.0.1.5")) + ":1538"
    mapped_client = _hex4(socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1")) + ":9C40"
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    tcp = tmp_path / "tcp"
    tcp6 = tmp_path / "tcp6"
    tcp.write_text(header + f"   0: {v4} {client} 01 00000000:00000000 00:00000000 00000000  1234  0 1\n"
                   f"   1: {v4} {client} 06 00000000:00000000 00:00000000 00000000     0  0 0\n")
    tcp6.write_text(header + f"   0: {mapped} {mapped_client} 01 00000000:00000000 00:00000000 00000000  1234  0 2\n")
    server = (peer.ipaddress.ip_address("127.0.1.5"), 5432)
    ours = (peer.ipaddress.ip_address("127.0.0.1"), 40000)
    assert peer.socket_owners(server, ours, (tcp,)) == {1234}  # TIME_WAIT (uid 0) left out
    assert peer.socket_owners(server, ours, (tcp6,)) == {1234}
    assert peer.socket_owners(server, ours, (tmp_path / "missing",)) == set()
    assert peer.socket_owners(ours, server, (tcp, tcp6)) == set()  # our own end is not the server's

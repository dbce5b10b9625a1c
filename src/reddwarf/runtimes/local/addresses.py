"""Address allocation for the local runtime: candidate (address, port) pairs and test-binding them.

By default each instance gets its own loopback address from a pool (127.0.1.0/24) and the engine's
standard port; an operator may instead give one routable address and a port range. The control plane
records the chosen pair; this module only proposes and tests.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from pathlib import Path

_TCP_LISTEN = "0A"
_PROC_NET = Path("/proc/net")


def pool_candidates(pool: IPv4Network) -> Iterator[str]:
    """Every usable host address of the pool, in order."""
    for host in pool.hosts():
        yield str(host)


def routable_candidates(address: IPv4Address, port_range: tuple[int, int]) -> Iterator[tuple[str, int]]:
    low, high = port_range
    for port in range(low, high + 1):
        yield str(address), port


def parse_listeners(text: str, ipv6: bool = False) -> set[tuple[str, int]]:
    """The (address, port) pairs in LISTEN state in the text of /proc/net/tcp (or tcp6)."""
    found: set[tuple[str, int]] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _TCP_LISTEN:
            continue
        hex_address, _, hex_port = fields[1].partition(":")
        raw = bytes.fromhex(hex_address)
        if ipv6:
            # Four host-order 32-bit words.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
            address = str(IPv6Address(words))
        else:
            address = str(IPv4Address(raw[::-1]))
        found.add((address, int(hex_port, 16)))
    return found


def listeners(proc_net: Path = _PROC_NET) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for name, ipv6 in (("tcp", False), ("tcp6", True)):
        try:
            found |= parse_listeners((proc_net / name).read_text(), ipv6=ipv6)
        except FileNotFoundError:
            continue
    return found


def blocked_by_listener(address: str, port: int, listening: set[tuple[str, int]]) -> bool:
    """True if a listener holds the pair itself or the wildcard of its family (0.0.0.0 or ::) on that port."""
    wildcards = {"0.0.0.0", "::"}
    if isinstance(ip_address(address), IPv4Address):
        wildcards.add(f"::ffff:{address}")
    return any((candidate, port) in listening for candidate in ({address} | wildcards))


def try_bind(address: str, port: int) -> bool:
    """Bind (without SO_REUSEADDR) and release at once; False if anything holds the pair."""
    family = socket.AF_INET6 if isinstance(ip_address(address), IPv6Address) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                return False
            raise
    return True


def bindable(address: str, port: int) -> bool:
    """May a server of ours bind (address, port)? Checks listeners (incl. wildcards) then test-binds."""
    if blocked_by_listener(address, port, listeners()):
        return False
    return try_bind(address, port)

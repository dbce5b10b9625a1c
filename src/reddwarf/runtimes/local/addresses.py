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


def pool_candidates(pool: IPv4Network) -> Iterator[str]:
    """Every usable host address of the pool, in order."""
    for host in pool.hosts():
        yield str(host)


def routable_candidates(address: IPv4Address, port_range: tuple[int, int]) -> Iterator[tuple[str, int]]:
    low, high = port_range
    for port in range(low, high + 1):
        yield str(address), port


def bindable(address: str, port: int) -> bool:
    """May a server of ours bind (address, port)? Bind without SO_REUSEADDR and release at once: on Linux
    that conflicts with any socket listening on the port at the same address or at a wildcard (0.0.0.0, or
    a dual-stack ::), whatever options the listener set. (Reading /proc/net/tcp instead costs ~5 ms: the
    kernel walks its whole connection table.)"""
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

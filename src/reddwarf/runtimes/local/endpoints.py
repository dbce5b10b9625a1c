"""Stable endpoints of the local runtime (docs/failover.md "The writer endpoint"): an nftables table of the
installation's own whose NAT chain, on the output hook, sends each new connection to an endpoint's address
and port to the member that serves it now. Nothing relays the bytes (conntrack keeps each connection's
translation), and only root can change the table: an instance's OS user cannot.

The whole table is rewritten in one `nft -f` transaction from the routes the store holds (add the table,
delete it, define it again: a connection made meanwhile meets the old table or the new one, never none), so
a crash between the store's write and the table's leaves what the next rewrite corrects. A route whose
endpoint is its target's own address needs no rule.

The control plane's own sockets carry `CONTROL_MARK` (`mark_control`) and are never redirected: a health
ping of a member must reach that member, not whoever serves its address as an endpoint.

Routes come from the store, which a tenant does not write directly, but every address and port is checked
before it is written into the nft script all the same.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from reddwarf.domain.errors import TemporaryError

NFT = "/usr/sbin/nft"
# SO_MARK of the control plane's sockets ("RD" and 1): the chain lets them through untranslated.
CONTROL_MARK = 0x52440001
NFT_TIMEOUT = 10.0
_PRIORITY = -100  # dstnat


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """New connections to `address`:`port` go to `target`:`target_port`."""

    address: str
    port: int
    target: str
    target_port: int

    def __post_init__(self) -> None:
        for value in (self.address, self.target):
            parsed = ipaddress.ip_address(value)  # ValueError for anything else
            if parsed.version != 4 or str(parsed) != value:
                raise ValueError(f"an endpoint route takes IPv4 addresses written plainly, not {value!r}")
        for port in (self.port, self.target_port):
            if type(port) is not int or not 0 < port < 65536:
                raise ValueError(f"an endpoint route takes ports 1-65535, not {port!r}")

    @property
    def needed(self) -> bool:
        return (self.address, self.port) != (self.target, self.target_port)


def table_name(installation: str) -> str:
    """The nft table of one installation (its OS-user prefix, say): letters, digits and underscores, and a
    digest of the name as given, so that two names that read alike ("rt-a", "rt_A") get tables of their own."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", installation.lower()).strip("_")[:32]
    if not cleaned:
        raise ValueError(f"no table name can be made of {installation!r}")
    return f"reddwarf_{cleaned}_{hashlib.sha256(installation.encode()).hexdigest()[:8]}"


def _checked(table: str) -> str:
    if re.fullmatch(r"[a-z][a-z0-9_]{0,63}", table) is None:
        raise ValueError(f"not a table name: {table!r}")
    return table


def render(table: str, routes: Iterable[Route]) -> str:
    """Pure: the `nft -f` script that replaces `table` with one holding `routes`, atomically."""
    _checked(table)
    rules = [f"    ip daddr {r.address} tcp dport {r.port} dnat to {r.target}:{r.target_port}"
             for r in sorted(set(routes)) if r.needed]
    return "\n".join([
        f"add table ip {table}",
        f"delete table ip {table}",
        f"table ip {table} {{",
        "  chain endpoints {",
        f"    type nat hook output priority {_PRIORITY}; policy accept;",
        f"    meta mark {CONTROL_MARK:#x} return",
        *rules,
        "  }",
        "}",
        "",
    ])


class Endpoints:
    """The installation's endpoint table on this host."""

    def __init__(self, table: str, nft: str = NFT) -> None:
        self.table = _checked(table)
        self._nft = nft

    def apply(self, routes: Iterable[Route]) -> None:
        """Make the table hold exactly `routes` (one transaction); TemporaryError if nft refused."""
        self._run(["-f", "-"], render(self.table, routes))

    def clear(self) -> None:
        """Remove the table (every route); nothing when it does not exist."""
        self._run(["-f", "-"], f"add table ip {self.table}\ndelete table ip {self.table}\n")

    def _run(self, args: list[str], script: str) -> None:
        try:
            done = subprocess.run([self._nft, *args], input=script.encode(), capture_output=True,
                                  timeout=NFT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TemporaryError(f"nft could not be run: {exc}") from None
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").splitlines()
            why = next((line for line in lines if "Error:" in line), lines[0] if lines else "no reason given")
            raise TemporaryError(f"nft refused the endpoint table {self.table}: {why.strip()[:300]}")


def mark_control(sock: socket.socket) -> None:
    """Mark a socket of the control plane (before it connects) so that no endpoint route translates it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, CONTROL_MARK)

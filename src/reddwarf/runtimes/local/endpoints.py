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

import fcntl
import hashlib
import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from reddwarf.domain.endpoints import CONTROL_MARK, Route
from reddwarf.domain.errors import TemporaryError

__all__ = ["CONTROL_MARK", "Endpoints", "Route", "clear_tables_of", "mark_control", "render", "table_name"]

NFT = "/usr/sbin/nft"
NFT_TIMEOUT = 10.0
_PRIORITY = -100  # dstnat


def table_name(installation: str) -> str:
    """The nft table of one installation (its OS-user prefix, say): letters, digits and underscores, and a
    digest of the name as given, so that two names that read alike ("rt-a", "rt_A") get tables of their own."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", installation.lower()).strip("_")[:32]
    if not cleaned:
        raise ValueError(f"no table name can be made of {installation!r}")
    return f"reddwarf_{cleaned}_{hashlib.sha256(installation.encode()).hexdigest()[:8]}"


def clear_tables_of(user_prefix: str, nft: str = NFT) -> list[str]:
    """Remove every endpoint table of installations whose OS-user prefix is `user_prefix` (`table_name` starts
    with it): kernel state that outlives a throwaway installation (a test's, a benchmark's). The names removed."""
    listed = subprocess.run([nft, "list", "tables", "ip"], check=False, capture_output=True, text=True,
                            timeout=NFT_TIMEOUT)
    start = "reddwarf_" + re.sub(r"[^a-z0-9_]", "_", user_prefix.lower()).strip("_")
    removed = []
    for line in listed.stdout.splitlines():
        name = line.split()[-1] if line.startswith("table ip ") else ""
        if name.startswith(start) and re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
            subprocess.run([nft, "delete", "table", "ip", name], check=False, capture_output=True,
                           timeout=NFT_TIMEOUT)
            removed.append(name)
    return removed


def _checked(table: str) -> str:
    if re.fullmatch(r"[a-z][a-z0-9_]{0,63}", table) is None:
        raise ValueError(f"not a table name: {table!r}")
    return table


def render(table: str, routes: Iterable[Route]) -> str:
    """Pure: the `nft -f` script that replaces `table` with one holding `routes`, atomically. Each moved endpoint is
    translated for connections made on this host (output) and arriving from elsewhere (prerouting); a new
    connection to a refused one is reset at its opening SYN, before any listener sees it (filter output and
    input, after the translation: a translated connection no longer names it), while one already made goes on (a
    replica still reading its stopping primary's last records during a switchover)."""
    _checked(table)
    chosen = sorted(set(routes))
    dnat = [f"    ip daddr {r.address} tcp dport {r.port} {_dnat(r)}" for r in chosen if r.needed and not r.refused]
    # A connection's opening SYN, never its later packets (told by the flags, not by conntrack, which does not
    # know a connection made before it began tracking: its next packet would look new).
    opening = "tcp flags & (fin | syn | rst | ack) == syn"
    reset = [f"    ip daddr {r.address} tcp dport {r.port} {opening} reject with tcp reset"
             for r in chosen if r.refused]
    exempt = f"    meta mark {CONTROL_MARK:#x} return"
    lines = [f"add table ip {table}", f"delete table ip {table}", f"table ip {table} {{"]
    for chain, hook, priority, rules in (("endpoints", "output", _PRIORITY, dnat),
                                         ("endpoints_in", "prerouting", _PRIORITY, dnat),
                                         ("refused", "output", 0, reset), ("refused_in", "input", 0, reset)):
        kind = "nat" if chain.startswith("endpoints") else "filter"
        lines += [f"  chain {chain} {{", f"    type {kind} hook {hook} priority {priority}; policy accept;",
                  exempt, *rules, "  }"]
    return "\n".join([*lines, "}", ""])


def _dnat(route: Route) -> str:
    if len(route.targets) == 1:
        (address, port), = route.targets
        return f"dnat to {address}:{port}"
    # New connections take the targets in turn (conntrack keeps each one's choice for its whole life).
    entries = ", ".join(f"{i} : {address} . {port}" for i, (address, port) in enumerate(route.targets))
    return f"dnat ip to numgen inc mod {len(route.targets)} map {{ {entries} }}"


class Endpoints:
    """The installation's endpoint table on this host."""

    def __init__(self, table: str, nft: str = NFT) -> None:
        self.table = _checked(table)
        self._nft = nft

    def apply(self, routes: Iterable[Route]) -> None:
        """Make the table hold exactly `routes` (one transaction); TemporaryError if nft refused."""
        self._run(["-f", "-"], render(self.table, routes))

    def publish(self, read: Callable[[], Iterable[Route]], lock: Path) -> None:
        """`apply(read())` under the host lock `lock`: writers are ordered, and each reads the store inside the
        lock, so a table written from an older read never replaces one written from a newer read."""
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.apply(read())
        finally:
            os.close(fd)

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

"""A replication set's stable endpoints (docs/failover.md): the writer endpoint is the address its primary had
when the set was formed, the reader endpoint one more address of the set's; a `Route` says where new
connections to one of them go now. The runtime carries the routes out (the local runtime: an nftables DNAT
rule per route); the store says which member serves each, and the routes are rewritten from it whole.

`CONTROL_MARK` marks the control plane's own sockets (`SO_MARK`): a route never translates them, so that a
health ping of a member reaches that member, not whoever serves its address as an endpoint.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# SO_MARK of the control plane's sockets ("RD" and 1): routes let them through untranslated.
CONTROL_MARK = 0x52440001

Target = tuple[str, int]


def _check_address(value: str) -> None:
    parsed = ipaddress.ip_address(value)  # ValueError for anything else
    if parsed.version != 4 or str(parsed) != value:
        raise ValueError(f"an endpoint route takes IPv4 addresses written plainly, not {value!r}")


def _check_port(port: int) -> None:
    if type(port) is not int or not 0 < port < 65536:
        raise ValueError(f"an endpoint route takes ports 1-65535, not {port!r}")


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """New connections to `address`:`port` go to one of `targets` (address, port), in turn; with no target they
    are refused (reset at once), so that whoever binds the address meanwhile (a fenced primary's, while its set
    fails over) receives nothing."""

    address: str
    port: int
    targets: tuple[Target, ...]

    def __post_init__(self) -> None:
        _check_address(self.address)
        _check_port(self.port)
        for target, target_port in self.targets:
            _check_address(target)
            _check_port(target_port)

    @property
    def refused(self) -> bool:
        return not self.targets

    @property
    def needed(self) -> bool:
        """A route to the endpoint's own address and port alone changes nothing."""
        return self.targets != ((self.address, self.port),)

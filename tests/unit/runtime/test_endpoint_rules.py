"""The endpoint table's nft script (`runtimes.local.endpoints.render`): replaced whole in one transaction, the
control plane's mark let through first in every chain, one translation per route that moves a connection (for
local clients and arriving ones), a reset for a refused one, and nothing but plain IPv4 addresses, ports and
table names ever written into it."""

from __future__ import annotations

import pytest

from reddwarf.runtimes.local.endpoints import CONTROL_MARK, Endpoints, Route, render, table_name


def test_the_table_is_replaced_whole_with_one_rule_per_moved_endpoint() -> None:
    script = render("reddwarf_x", [Route("127.0.9.1", 5432, (("127.0.9.2", 5432),)),
                                   Route("127.0.9.3", 6379, (("127.0.9.3", 6379),))])
    lines = script.splitlines()
    assert lines[:3] == ["add table ip reddwarf_x", "delete table ip reddwarf_x", "table ip reddwarf_x {"]
    assert f"    meta mark {CONTROL_MARK:#x} return" in lines
    dnat = [line.strip() for line in lines if "dnat" in line]
    # The unmoved one needs none; the moved one is translated on the output and the prerouting hooks.
    assert dnat == ["ip daddr 127.0.9.1 tcp dport 5432 dnat to 127.0.9.2:5432"] * 2
    assert lines.count(f"    meta mark {CONTROL_MARK:#x} return") == 4
    assert not [line for line in lines if "reject" in line]


def test_a_refused_endpoint_is_reset_after_the_translations() -> None:
    script = render("reddwarf_x", [Route("127.0.9.1", 5432, ()), Route("127.0.9.5", 5432, (("127.0.9.6", 5432),))])
    lines = [line.strip() for line in script.splitlines()]
    assert lines.count("ip daddr 127.0.9.1 tcp dport 5432 tcp flags & (fin | syn | rst | ack) == syn "
                       "reject with tcp reset") == 2
    assert "type filter hook output priority 0; policy accept;" in lines
    assert "type filter hook input priority 0; policy accept;" in lines
    assert not [line for line in lines if "127.0.9.1" in line and "dnat" in line]


@pytest.mark.parametrize(("address", "port"), [("127.0.9.1; flush ruleset", 5432), ("::1", 5432),
                                               ("127.000.9.1", 5432), ("127.0.9.1", 0), ("127.0.9.1", 70000),
                                               ("127.0.9.1", 5432.0), ("127.0.9.1", True)])
def test_only_plain_ipv4_addresses_and_ports_make_a_route(address: str, port: int) -> None:
    with pytest.raises(ValueError):
        Route(address, port, (("127.0.9.2", 5432),))
    with pytest.raises(ValueError):
        Route("127.0.9.2", 5432, ((address, port),))


def test_a_route_without_a_target_is_refused() -> None:
    assert Route("127.0.9.1", 5432, ()).refused and Route("127.0.9.1", 5432, ()).needed
    assert not Route("127.0.9.1", 5432, (("127.0.9.1", 5432),)).needed


def test_a_route_over_several_targets_takes_them_in_turn() -> None:
    script = render("reddwarf_x", [Route("127.0.9.1", 5432, (("127.0.9.2", 5432), ("127.0.9.3", 5433)))])
    dnat = [line.strip() for line in script.splitlines() if "dnat" in line]
    assert dnat == ["ip daddr 127.0.9.1 tcp dport 5432 dnat ip to numgen inc mod 2 map "
                    "{ 0 : 127.0.9.2 . 5432, 1 : 127.0.9.3 . 5433 }"] * 2


def test_table_names_are_made_safe_and_apart() -> None:
    assert table_name("rt1a2b-").startswith("reddwarf_rt1a2b_")
    assert table_name("rt-a") != table_name("rt_A")
    for bad in ("x; flush ruleset", "x\nflush ruleset"):
        with pytest.raises(ValueError):
            render(bad, [])
        with pytest.raises(ValueError):
            Endpoints(bad)

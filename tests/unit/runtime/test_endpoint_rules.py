"""The endpoint table's nft script (`runtimes.local.endpoints.render`): replaced whole in one transaction, the
control plane's mark let through first, one rule per route that moves a connection, and nothing but plain
IPv4 addresses, ports and table names ever written into it."""

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
    assert dnat == ["ip daddr 127.0.9.1 tcp dport 5432 dnat to 127.0.9.2:5432"]  # the unmoved one needs none


@pytest.mark.parametrize(("address", "port"), [("127.0.9.1; flush ruleset", 5432), ("::1", 5432),
                                               ("127.000.9.1", 5432), ("127.0.9.1", 0), ("127.0.9.1", 70000),
                                               ("127.0.9.1", 5432.0), ("127.0.9.1", True)])
def test_only_plain_ipv4_addresses_and_ports_make_a_route(address: str, port: int) -> None:
    with pytest.raises(ValueError):
        Route(address, port, (("127.0.9.2", 5432),))
    with pytest.raises(ValueError):
        Route("127.0.9.2", 5432, ((address, port),))


def test_a_route_has_a_target() -> None:
    with pytest.raises(ValueError):
        Route("127.0.9.1", 5432, ())


def test_a_route_over_several_targets_takes_them_in_turn() -> None:
    script = render("reddwarf_x", [Route("127.0.9.1", 5432, (("127.0.9.2", 5432), ("127.0.9.3", 5433)))])
    dnat = [line.strip() for line in script.splitlines() if "dnat" in line]
    assert dnat == ["ip daddr 127.0.9.1 tcp dport 5432 dnat ip to numgen inc mod 2 map "
                    "{ 0 : 127.0.9.2 . 5432, 1 : 127.0.9.3 . 5433 }"]


def test_table_names_are_made_safe_and_apart() -> None:
    assert table_name("rt1a2b-").startswith("reddwarf_rt1a2b_")
    assert table_name("rt-a") != table_name("rt_A")
    for bad in ("x; flush ruleset", "x\nflush ruleset"):
        with pytest.raises(ValueError):
            render(bad, [])
        with pytest.raises(ValueError):
            Endpoints(bad)

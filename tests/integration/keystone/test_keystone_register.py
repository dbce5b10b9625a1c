"""`reddwarf openstack register`: creates the service and endpoints, changes nothing the second time,
updates an endpoint whose URL differs."""

from __future__ import annotations

from typing import Any

from keystone_support import Cloud, issue_token, register

# A service type of its own, so this test never disturbs the `database` service the other tests use.
ENV = {"REDDWARF_KEYSTONE_SERVICE_TYPE": "rdtest", "REDDWARF_KEYSTONE_SERVICE_NAME": "rdtest-svc"}


def actions(changes: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(c["kind"], c["action"]) for c in changes]


def catalog_entry(cloud: Cloud, service_type: str) -> dict[str, Any]:
    _, token = issue_token(cloud.keystone.url, cloud.alice)
    entry: dict[str, Any] = next(s for s in token["catalog"] if s["type"] == service_type)
    return entry


def test_register_is_idempotent_and_fixes_urls(cloud: Cloud) -> None:
    first = register(cloud, "http://db-one.example:8779/", **ENV)
    assert actions(first) == [("region", "unchanged"), ("service", "created")] + [("endpoint", "created")] * 3

    second = register(cloud, "http://db-one.example:8779", **ENV)
    assert actions(second) == [("region", "unchanged"), ("service", "unchanged")] + [("endpoint", "unchanged")] * 3
    assert [c["id"] for c in second] == [c["id"] for c in first]

    third = register(cloud, "http://db-two.example:8779", **ENV)
    assert actions(third) == [("region", "unchanged"), ("service", "unchanged")] + [("endpoint", "updated")] * 3

    entry = catalog_entry(cloud, "rdtest")
    assert entry["name"] == "rdtest-svc"
    urls = {e["interface"]: e["url"] for e in entry["endpoints"]}
    expected = f"http://db-two.example:8779/v1.0/{cloud.alice.project_id}"
    assert urls == {"public": expected, "internal": expected, "admin": expected}


def test_the_database_service_is_in_the_catalog(cloud: Cloud, reddwarf: Any) -> None:
    entry = catalog_entry(cloud, "database")
    assert entry["name"] == "reddwarf"
    assert {e["url"] for e in entry["endpoints"]} == {f"{reddwarf.url}/v1.0/{cloud.alice.project_id}"}

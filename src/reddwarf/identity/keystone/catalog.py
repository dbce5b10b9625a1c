"""Register Reddwarf in Keystone's service catalog, idempotently (`reddwarf openstack register`).

`register` makes the catalog hold exactly one enabled service named `service_name` of type `database`,
the region, and per interface (public, internal, admin) one enabled endpoint in that region whose URL is
`<public_url>/v1.0/$(project_id)s` (Keystone substitutes the token's project: Trove's clients find the API
through it). A second run changes nothing; an endpoint with another URL is updated in place; duplicate
endpoints of the same interface and region are deleted. Needs a client authenticated as a Keystone admin.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reddwarf.identity.keystone.client import KeystoneClient

logger = logging.getLogger(__name__)

INTERFACES: tuple[str, ...] = ("public", "internal", "admin")
DESCRIPTION = "Reddwarf: Database as a Service (OpenStack Trove v1.0 API)"

Action = Literal["created", "updated", "unchanged", "deleted"]


@dataclass(frozen=True, slots=True)
class Change:
    """One thing `register` looked at: `kind` (service, region, endpoint), its id, what it did."""

    kind: str
    ident: str
    action: Action
    detail: str = ""


def endpoint_url(public_url: str) -> str:
    """`https://db.example.com` -> `https://db.example.com/v1.0/$(project_id)s` (Trove's catalog URL)."""
    return public_url.rstrip("/") + "/v1.0/$(project_id)s"


def register(
    client: KeystoneClient,
    *,
    public_url: str,
    region: str,
    service_name: str = "reddwarf",
    service_type: str = "database",
    interfaces: Sequence[str] = INTERFACES,
) -> list[Change]:
    """Make the catalog match; returns what was created, updated, deleted or already right."""
    changes = [_ensure_region(client, region)]
    service_change, service_id = _ensure_service(client, service_name, service_type)
    changes.append(service_change)
    changes.extend(_ensure_endpoints(client, service_id, region, endpoint_url(public_url), interfaces))
    for change in changes:
        logger.info("catalog %s %s: %s %s", change.kind, change.ident, change.action, change.detail)
    return changes


def _ensure_region(client: KeystoneClient, region: str) -> Change:
    response = client.request("GET", f"/regions/{region}")
    if response.status_code == 404:
        created = client.request("POST", "/regions", json={"region": {"id": region}})
        client.check(created, f"create region {region}")
        return Change("region", region, "created")
    client.check(response, f"read region {region}")
    return Change("region", region, "unchanged")


def _ensure_service(client: KeystoneClient, name: str, service_type: str) -> tuple[Change, str]:
    response = client.request("GET", "/services", params={"type": service_type})
    client.check(response, "list services")
    ours = [s for s in response.json()["services"] if s.get("name") == name]
    if not ours:
        body = {"service": {"type": service_type, "name": name, "description": DESCRIPTION, "enabled": True}}
        created = client.request("POST", "/services", json=body)
        client.check(created, f"create service {name}")
        service_id = str(created.json()["service"]["id"])
        return Change("service", service_id, "created", f"{name} ({service_type})"), service_id
    service = ours[0]
    service_id = str(service["id"])
    if service.get("enabled", True):
        return Change("service", service_id, "unchanged", f"{name} ({service_type})"), service_id
    patched = client.request("PATCH", f"/services/{service_id}", json={"service": {"enabled": True}})
    client.check(patched, f"enable service {name}")
    return Change("service", service_id, "updated", f"{name} ({service_type}) enabled"), service_id


def _ensure_endpoints(
    client: KeystoneClient, service_id: str, region: str, url: str, interfaces: Sequence[str]
) -> list[Change]:
    response = client.request("GET", "/endpoints", params={"service_id": service_id})
    client.check(response, "list endpoints")
    existing: list[Mapping[str, Any]] = [
        e for e in response.json()["endpoints"] if (e.get("region_id") or e.get("region")) == region
    ]
    changes: list[Change] = []
    for interface in interfaces:
        mine = [e for e in existing if e.get("interface") == interface]
        if not mine:
            body = {
                "endpoint": {
                    "service_id": service_id, "interface": interface, "url": url, "region_id": region, "enabled": True,
                }
            }
            created = client.request("POST", "/endpoints", json=body)
            client.check(created, f"create the {interface} endpoint")
            changes.append(Change("endpoint", str(created.json()["endpoint"]["id"]), "created", f"{interface} {url}"))
            continue
        keep, *extra = mine
        keep_id = str(keep["id"])
        if keep.get("url") != url or not keep.get("enabled", True):
            patched = client.request("PATCH", f"/endpoints/{keep_id}", json={"endpoint": {"url": url, "enabled": True}})
            client.check(patched, f"update the {interface} endpoint")
            changes.append(Change("endpoint", keep_id, "updated", f"{interface} {keep.get('url')} -> {url}"))
        else:
            changes.append(Change("endpoint", keep_id, "unchanged", f"{interface} {url}"))
        for duplicate in extra:
            dup_id = str(duplicate["id"])
            deleted = client.request("DELETE", f"/endpoints/{dup_id}")
            client.check(deleted, f"delete a duplicate {interface} endpoint")
            changes.append(Change("endpoint", dup_id, "deleted", f"duplicate {interface} {duplicate.get('url')}"))
    return changes

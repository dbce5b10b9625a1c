"""A scripted stand-in for the v1.0 API behind `httpx.MockTransport`, for pure client and CLI tests.

`FakeApi` records every request and lets the test's `handler` answer it; `instance_body` and `fault_response`
build the answers in Trove's wire format (`backup_body` a backup).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

ENDPOINT = "http://dbaas.test:8779"
TOKEN = "tok-7d2c1a9e-very-secret"
PROJECT = "proj-1"
BACKUP_ID = "b0000000-0000-4000-8000-000000000001"


def instance_body(instance_id: str, status: str = "BUILD", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": instance_id,
        "name": f"db-{instance_id}",
        "status": status,
        "operating_status": "",
        "links": [],
        "flavor": {"id": "2", "links": []},
        "datastore": {"type": "postgresql", "version": "15", "version_number": "15.18"},
        "region": "RegionOne",
        "volume": {"size": 2},
    }
    body.update(extra)
    return body


def backup_body(backup_id: str = BACKUP_ID, status: str = "NEW", **extra: Any) -> dict[str, Any]:
    """A backup in Trove's view with Reddwarf's extensions (`progress`, `uncompressed_size`)."""
    body: dict[str, Any] = {
        "id": backup_id, "name": f"bk-{backup_id[-1]}", "description": None, "locationRef": None,
        "instance_id": "i1", "created": "2026-11-22T11:00:00", "updated": "2026-11-22T11:00:00", "size": None,
        "status": status, "parent_id": None, "project_id": PROJECT, "storage_driver": "swift",
        "datastore": {"type": "postgresql", "version": "18", "version_id": "v18"},
        "progress": {"bytes_done": 0, "phase": "queued"}, "uncompressed_size": None,
    }
    body.update(extra)
    return body


def fault_response(status: int, name: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={name: {"code": status, "message": message}})


@dataclass
class FakeApi:
    """Records every request; `handler` answers it (set per test)."""

    handler: Callable[[httpx.Request], httpx.Response]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]

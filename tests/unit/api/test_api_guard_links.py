"""Which paths the request guard authenticates, and the base of links, without a server."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from reddwarf.api.deps import base_url
from reddwarf.api.guard import project_of
from reddwarf.settings import Settings


@pytest.mark.parametrize(
    ("path", "project"),
    [("/v1.0/p1/instances", "p1"), ("/v1.0/p1/instances/i1/users", "p1"), ("/v1.0/p1/", None),
     ("/v1.0/", None), ("/", None), ("/healthcheck", None), ("/openapi.json", None), ("/docs", None),
     ("/v1.0//instances", None), ("/v2.0/p1/instances", None)],
)
def test_the_guard_authenticates_every_project_route_and_no_public_one(path: str, project: str | None) -> None:
    assert project_of(path) == project


def _base(server: Any, scheme: str = "http", public_url: str | None = None, host_header: str = "evil.example") -> str:
    scope = {"type": "http", "scheme": scheme, "server": server, "path": "/", "headers": [
        (b"host", host_header.encode())]}
    ctx = SimpleNamespace(settings=Settings(public_url=public_url, host="127.0.0.1", port=8779))
    return asyncio.run(base_url(Request(scope), ctx))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("server", "scheme", "expected"),
    [(("127.0.0.1", 8779), "http", "http://127.0.0.1:8779"), (("10.1.2.3", 80), "http", "http://10.1.2.3"),
     (("10.1.2.3", 443), "https", "https://10.1.2.3"), (("::1", 8779), "http", "http://[::1]:8779"),
     (None, "http", "http://127.0.0.1:8779")],
)
def test_links_use_the_address_the_connection_arrived_at(server: Any, scheme: str, expected: str) -> None:
    assert _base(server, scheme) == expected


def test_links_use_public_url_when_set() -> None:
    assert _base(("127.0.0.1", 8779), public_url="https://db.example.com/") == "https://db.example.com"

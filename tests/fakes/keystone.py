"""A fake Keystone v3 behind `httpx.MockTransport`, for unit tests of the Keystone client and the authenticator.

It knows the tokens a test gives it, issues service tokens for the password "service-pw", and counts what it
was asked; `down` makes every request fail to connect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from reddwarf.domain.secret import Secret
from reddwarf.identity.keystone.client import KeystoneClient
from reddwarf.identity.keystone.settings import PasswordCredentials

AUTH_URL = "http://keystone.test/v3"
NOW = 1_800_000_000.0


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def token_body(project_id: str | None, roles: tuple[str, ...], expires_at: float) -> dict[str, Any]:
    token: dict[str, Any] = {
        "user": {"id": "u1", "name": "alice", "domain": {"id": "default"}},
        "roles": [{"id": f"r-{r}", "name": r} for r in roles],
        "expires_at": iso(expires_at),
        "audit_ids": ["audit-1"],
        "methods": ["password"],
    }
    if project_id is not None:
        token["project"] = {"id": project_id, "name": "proj", "domain": {"id": "default"}}
    return {"token": token}


@dataclass
class FakeKeystone:
    """Tokens it knows (value -> (project, roles, expires_at)); counts what it was asked."""

    now: float = NOW
    tokens: dict[str, tuple[str | None, tuple[str, ...], float]] = field(default_factory=dict)
    service_token_ttl: float = 3600.0
    down: bool = False
    validate_status: int | None = None
    issued: int = 0
    validations: int = 0
    service_tokens: list[str] = field(default_factory=list)
    revoked_service_tokens: set[str] = field(default_factory=set)
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "POST" and request.url.path == "/v3/auth/tokens":
            body = json.loads(request.content)
            if body["auth"]["identity"]["password"]["user"]["password"] != "service-pw":
                return httpx.Response(401, json={"error": {"code": 401, "message": "bad credentials"}})
            self.issued += 1
            value = f"service-token-{self.issued}"
            self.service_tokens.append(value)
            expires = self.now + self.service_token_ttl
            body = token_body("svc", ("service",), expires)
            return httpx.Response(201, headers={"X-Subject-Token": value}, json=body)
        if request.method == "GET" and request.url.path == "/v3/auth/tokens":
            caller = request.headers.get("X-Auth-Token", "")
            if caller not in self.service_tokens or caller in self.revoked_service_tokens:
                return httpx.Response(401, json={"error": {"code": 401, "message": "unauthorized"}})
            self.validations += 1
            if self.validate_status is not None:
                return httpx.Response(self.validate_status, json={"error": {"code": self.validate_status}})
            subject = request.headers["X-Subject-Token"]
            known = self.tokens.get(subject)
            if known is None or known[2] <= self.now:
                return httpx.Response(404, json={"error": {"code": 404, "message": "Could not find token"}})
            return httpx.Response(200, json=token_body(*known))
        return httpx.Response(404)

    def client(self, password: str = "service-pw") -> KeystoneClient:
        creds = PasswordCredentials(username="reddwarf", password=Secret(password), project_name="service")
        return KeystoneClient(AUTH_URL, creds, clock=lambda: self.now, transport=httpx.MockTransport(self.handler))

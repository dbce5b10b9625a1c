"""The small Keystone client: its own token is cached until shortly before expiry and renewed on 401."""

from __future__ import annotations

import json

import httpx
import pytest
from tests.fakes.keystone import AUTH_URL, FakeKeystone

from reddwarf.domain.secret import Secret
from reddwarf.identity.keystone.client import KeystoneClient, KeystoneRefused, TokenInfo, parse_time
from reddwarf.identity.keystone.settings import (
    ApplicationCredential,
    KeystoneConfigError,
    KeystoneSettings,
    v3_url,
)


def test_the_service_token_is_reused_until_shortly_before_it_expires() -> None:
    keystone = FakeKeystone(service_token_ttl=600)
    keystone.tokens["t"] = ("p", (), keystone.now + 3600)
    client = keystone.client()

    client.validate("t")
    client.validate("t")
    assert keystone.issued == 1

    keystone.now += 600 - 30  # inside the refresh margin (60 s)
    client.validate("t")
    assert keystone.issued == 2


def test_a_401_to_the_service_token_authenticates_again_and_retries() -> None:
    keystone = FakeKeystone()
    keystone.tokens["t"] = ("p", (), keystone.now + 3600)
    client = keystone.client()
    client.validate("t")
    keystone.revoked_service_tokens.add(keystone.service_tokens[-1])

    info = client.validate("t")

    assert info.project_id == "p"
    assert keystone.issued == 2


def test_the_password_is_sent_in_the_body_only() -> None:
    keystone = FakeKeystone()
    keystone.client().token()
    (request,) = keystone.requests
    body = json.loads(request.content)
    assert body["auth"]["identity"]["password"]["user"] == {
        "name": "reddwarf", "domain": {"name": "Default"}, "password": "service-pw",
    }
    assert body["auth"]["scope"] == {"project": {"name": "service", "domain": {"name": "Default"}}}
    assert "service-pw" not in str(request.url) and "service-pw" not in str(request.headers)


def test_wrong_credentials_raise_refused_without_the_password() -> None:
    keystone = FakeKeystone()
    with pytest.raises(KeystoneRefused) as caught:
        keystone.client(password="not-it").token()
    assert "not-it" not in str(caught.value)
    assert "reddwarf" in str(caught.value)


def test_application_credentials_use_their_own_method() -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(401)

    client = KeystoneClient(
        AUTH_URL, ApplicationCredential("ac-id", Secret("ac-secret")), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(KeystoneRefused):
        client.token()
    assert seen == [{"auth": {"identity": {
        "methods": ["application_credential"], "application_credential": {"id": "ac-id", "secret": "ac-secret"},
    }}}]


def test_token_info_parses_keystone_times() -> None:
    assert parse_time("2026-01-01T00:00:00.000000Z") == 1767225600.0
    info = TokenInfo.from_body({"token": {
        "user": {"id": "u"}, "project": {"id": "p"}, "roles": [{"name": "member"}],
        "expires_at": "2026-01-01T00:00:00.000000Z", "audit_ids": ["a"],
    }})
    assert (info.project_id, info.roles, info.audit_id) == ("p", ("member",), "a")


def test_settings_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTH_URL", "USERNAME", "PASSWORD", "PROJECT_NAME", "APPLICATION_CREDENTIAL_ID",
                 "APPLICATION_CREDENTIAL_SECRET"):
        monkeypatch.delenv(f"REDDWARF_KEYSTONE_{name}", raising=False)
    settings = KeystoneSettings()
    with pytest.raises(KeystoneConfigError, match="REDDWARF_KEYSTONE_AUTH_URL"):
        settings.require_auth_url()
    with pytest.raises(KeystoneConfigError, match="REDDWARF_KEYSTONE_PASSWORD"):
        settings.service_credentials()

    monkeypatch.setenv("REDDWARF_KEYSTONE_APPLICATION_CREDENTIAL_ID", "ac")
    with pytest.raises(KeystoneConfigError, match="APPLICATION_CREDENTIAL_SECRET"):
        KeystoneSettings().service_credentials()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDDWARF_KEYSTONE_AUTH_URL", "http://keystone:5000/")
    monkeypatch.setenv("REDDWARF_KEYSTONE_USERNAME", "reddwarf")
    monkeypatch.setenv("REDDWARF_KEYSTONE_PASSWORD", "pw")
    monkeypatch.setenv("REDDWARF_KEYSTONE_PROJECT_NAME", "service")
    settings = KeystoneSettings()

    creds = settings.service_credentials()

    assert settings.auth_url == "http://keystone:5000/v3"
    assert creds.password == Secret("pw")
    assert "pw" not in repr(settings)
    assert v3_url("http://k/v3/") == "http://k/v3"

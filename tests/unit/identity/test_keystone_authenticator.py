"""Keystone tokens -> AuthContext: error mapping (401, 403, 503), the cache across outages, role mapping."""

from __future__ import annotations

import logging

import pytest
from tests.fakes.keystone import FakeKeystone

from reddwarf.domain.errors import Forbidden, ServiceUnavailable, Unauthorized
from reddwarf.identity.context import AuthContext
from reddwarf.identity.keystone.authenticator import KeystoneAuthenticator, map_roles
from reddwarf.identity.keystone.cache import ValidationCache
from reddwarf.identity.keystone.client import TokenInfo


def authenticator(
    keystone: FakeKeystone, *, ttl: float = 60.0, admin_roles: tuple[str, ...] = ("admin",)
) -> KeystoneAuthenticator:
    cache: ValidationCache[TokenInfo] = ValidationCache(ttl, 100, clock=lambda: keystone.now)
    return KeystoneAuthenticator(keystone.client(), cache, admin_roles=admin_roles, clock=lambda: keystone.now)


def test_a_valid_token_becomes_the_callers_context() -> None:
    keystone = FakeKeystone()
    keystone.tokens["user-token"] = ("proj-a", ("member", "reader"), keystone.now + 3600)

    auth = authenticator(keystone)("user-token")

    assert auth == AuthContext(project_id="proj-a", roles=("member", "reader"), is_admin=False, token_id="audit-1")


def test_an_admin_role_makes_an_admin() -> None:
    keystone = FakeKeystone()
    keystone.tokens["admin-token"] = ("proj-admin", ("admin", "member"), keystone.now + 3600)

    auth = authenticator(keystone)("admin-token")

    assert auth.is_admin
    assert auth.project_id == "proj-admin"


def test_configured_admin_roles_map_to_admin() -> None:
    assert map_roles(["cloud_admin", "member"], ["cloud_admin"]) == ("cloud_admin", "member", "admin")
    assert map_roles(["member", "member"], ["cloud_admin"]) == ("member",)
    assert map_roles(["admin"], ["cloud_admin"]) == ("admin",)


@pytest.mark.parametrize("token", [None, ""])
def test_a_missing_token_is_401_without_asking_keystone(token: str | None) -> None:
    keystone = FakeKeystone()
    with pytest.raises(Unauthorized):
        authenticator(keystone)(token)
    assert keystone.requests == []


def test_keystone_404_on_validate_is_401() -> None:
    keystone = FakeKeystone()
    with pytest.raises(Unauthorized, match="requires authentication"):
        authenticator(keystone)("unknown-token")
    assert keystone.validations == 1


def test_a_token_without_project_scope_is_403() -> None:
    keystone = FakeKeystone()
    keystone.tokens["unscoped"] = (None, (), keystone.now + 3600)
    with pytest.raises(Forbidden, match="not scoped to a project"):
        authenticator(keystone)("unscoped")


def test_validations_are_cached_for_the_ttl() -> None:
    keystone = FakeKeystone()
    keystone.tokens["t"] = ("p", ("member",), keystone.now + 3600)
    auth = authenticator(keystone, ttl=60)

    for _ in range(5):
        auth("t")
    assert keystone.validations == 1

    keystone.now += 61
    auth("t")
    assert keystone.validations == 2


def test_a_revoked_token_stops_working_once_its_entry_expires() -> None:
    keystone = FakeKeystone()
    keystone.tokens["t"] = ("p", ("member",), keystone.now + 3600)
    auth = authenticator(keystone, ttl=60)
    auth("t")

    del keystone.tokens["t"]  # revoked in Keystone
    keystone.now += 30
    assert auth("t").project_id == "p"  # still cached
    keystone.now += 31
    with pytest.raises(Unauthorized):
        auth("t")


def test_a_token_that_expires_before_the_ttl_is_refused_at_its_expiry() -> None:
    keystone = FakeKeystone()
    keystone.tokens["t"] = ("p", ("member",), keystone.now + 10)
    auth = authenticator(keystone, ttl=60)
    auth("t")

    keystone.now += 11
    with pytest.raises(Unauthorized):
        auth("t")


def test_keystone_unreachable_is_503_for_an_uncached_token() -> None:
    keystone = FakeKeystone()
    keystone.tokens["t"] = ("p", ("member",), keystone.now + 3600)
    keystone.down = True

    with pytest.raises(ServiceUnavailable, match="Keystone"):
        authenticator(keystone)("t")


def test_keystone_unreachable_a_cached_token_holds_until_its_ttl() -> None:
    keystone = FakeKeystone()
    keystone.tokens["t"] = ("p", ("member",), keystone.now + 3600)
    auth = authenticator(keystone, ttl=60)
    auth("t")

    keystone.down = True
    keystone.now += 59
    assert auth("t").project_id == "p"
    keystone.now += 2
    with pytest.raises(ServiceUnavailable):
        auth("t")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_keystone_5xx_is_503(status: int) -> None:
    keystone = FakeKeystone(validate_status=status)
    with pytest.raises(ServiceUnavailable):
        authenticator(keystone)("t")


def test_a_service_user_not_allowed_to_validate_is_503_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    keystone = FakeKeystone(validate_status=403)
    with caplog.at_level(logging.ERROR), pytest.raises(ServiceUnavailable):
        authenticator(keystone)("t")
    assert "'service' role" in caplog.text


def test_wrong_service_credentials_are_503_never_a_pass() -> None:
    keystone = FakeKeystone()
    keystone.tokens["t"] = ("p", ("member",), keystone.now + 3600)
    cache: ValidationCache[TokenInfo] = ValidationCache(60, 100, clock=lambda: keystone.now)
    auth = KeystoneAuthenticator(keystone.client(password="wrong"), cache, clock=lambda: keystone.now)

    with pytest.raises(ServiceUnavailable):
        auth("t")


def test_no_token_reaches_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    keystone = FakeKeystone()
    keystone.tokens["secret-user-token"] = ("p", ("member",), keystone.now + 3600)
    auth = authenticator(keystone)
    with caplog.at_level(logging.DEBUG):
        auth("secret-user-token")
        with pytest.raises(Unauthorized):
            auth("another-secret-token")
        keystone.down = True
        with pytest.raises(ServiceUnavailable):
            auth("third-secret-token")

    assert "secret" not in caplog.text
    assert "service-token-" not in caplog.text
    assert "service-pw" not in caplog.text

"""`KeystoneAuthenticator`: an `X-Auth-Token` -> the `AuthContext` the builtin identity would produce.

Trove's rules, applied by the API on the context this returns: the path's project must be the token's
project (403 otherwise, admins included); a token carrying one of `admin_roles` is an admin (any
project's resource by id, the management API). Error mapping:

- no token, or Keystone says the token is not valid (404: unknown, expired, revoked) -> 401 `unauthorized`;
- a valid token scoped to no project (unscoped, domain or system scope) -> 403 `forbidden`;
- Keystone unreachable, failing, or refusing the service user -> 503 `serviceUnavailable` for a token not
  in the cache; a cached validation holds until its entry expires (never longer than the token itself).
Nothing is ever let through without a validation Keystone gave within the cache TTL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from reddwarf.domain.errors import Forbidden, ServiceUnavailable, Unauthorized
from reddwarf.identity.context import ADMIN_ROLE, AuthContext
from reddwarf.identity.keystone.cache import ValidationCache
from reddwarf.identity.keystone.client import (
    KeystoneClient,
    KeystoneRefused,
    KeystoneUnavailable,
    TokenInfo,
    TokenNotValid,
)
from reddwarf.identity.keystone.settings import KeystoneSettings

logger = logging.getLogger(__name__)

UNAUTHORIZED = "The request you have made requires authentication."
UNAVAILABLE = (
    "The identity service (Keystone) cannot validate the token right now; the request was not run. "
    "Try again later."
)
NO_PROJECT = "The token is not scoped to a project; ask Keystone for a project-scoped token."


def map_roles(roles: Iterable[str], admin_roles: Iterable[str] = (ADMIN_ROLE,)) -> tuple[str, ...]:
    """Keystone role names -> Reddwarf roles: unchanged, plus `admin` when any of `admin_roles` is held."""
    names = tuple(dict.fromkeys(roles))
    if ADMIN_ROLE not in names and any(role in names for role in admin_roles):
        names = (*names, ADMIN_ROLE)
    return names


def context_from(info: TokenInfo, admin_roles: Iterable[str] = (ADMIN_ROLE,)) -> AuthContext:
    """The caller a validated Keystone token describes; `Forbidden` when it has no project scope."""
    if info.project_id is None:
        raise Forbidden(NO_PROJECT)
    return AuthContext.for_roles(info.project_id, map_roles(info.roles, admin_roles), token_id=info.audit_id)


class KeystoneAuthenticator:
    """Callable `(token) -> AuthContext`; raises `Unauthorized`, `Forbidden` or `ServiceUnavailable`."""

    def __init__(
        self,
        client: KeystoneClient,
        cache: ValidationCache[TokenInfo],
        *,
        admin_roles: Iterable[str] = (ADMIN_ROLE,),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.cache = cache
        self.admin_roles = tuple(admin_roles)
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: KeystoneSettings, *, clock: Callable[[], float] = time.time
    ) -> KeystoneAuthenticator:
        """Built at start-up; `KeystoneConfigError` (naming the settings) when the settings are incomplete."""
        client = KeystoneClient.for_service(settings, clock=clock)
        cache: ValidationCache[TokenInfo] = ValidationCache(settings.cache_ttl, settings.cache_size, clock=clock)
        return cls(client, cache, admin_roles=settings.admin_roles, clock=clock)

    def __call__(self, token: str | None) -> AuthContext:
        if not token:
            raise Unauthorized(UNAUTHORIZED)
        info = self.cache.get(token)
        if info is None:
            info = self._validate(token)
        if info.expires_at <= self._clock():
            self.cache.discard(token)
            raise Unauthorized(UNAUTHORIZED)
        return context_from(info, self.admin_roles)

    def _validate(self, token: str) -> TokenInfo:
        try:
            info = self.client.validate(token)
        except TokenNotValid:
            logger.info("refused a token Keystone does not accept")
            raise Unauthorized(UNAUTHORIZED) from None
        except KeystoneUnavailable as exc:
            logger.warning("cannot validate a token: %s", exc)
            raise ServiceUnavailable(UNAVAILABLE) from None
        except KeystoneRefused as exc:
            logger.error("cannot validate a token, check the Keystone service user: %s", exc)
            raise ServiceUnavailable(UNAVAILABLE) from None
        self.cache.put(token, info, info.expires_at)
        logger.debug("validated token %s of user %s in project %s", info.audit_id, info.user_id, info.project_id)
        return info

    def close(self) -> None:
        self.client.close()

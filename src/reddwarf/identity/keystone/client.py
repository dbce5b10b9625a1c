"""A small Keystone v3 client on httpx: issue a token, validate one, and authenticated calls for the catalog.

`KeystoneClient` holds one set of credentials (the service user, or an operator's admin user for
`register`). Its own token is fetched with `POST /v3/auth/tokens`, cached until `refresh_margin` seconds
before its `expires_at`, and fetched again when Keystone answers 401 to it (once per call). Errors:

- `KeystoneUnavailable`: Keystone cannot be reached, timed out or answered 5xx (temporary).
- `KeystoneRefused`: Keystone refused *our* credentials or denied us the call (401/403): a configuration
  problem the operator must fix; callers must not let a request through because of it.
- `TokenNotValid`: the token under validation is unknown, expired, revoked or malformed (Keystone's 404).

No message, log line or exception ever contains a token or a password.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from reddwarf.domain.secret import Secret
from reddwarf.identity.keystone.settings import ApplicationCredential, Credentials, KeystoneSettings

logger = logging.getLogger(__name__)

SUBJECT_TOKEN = "X-Subject-Token"
AUTH_TOKEN = "X-Auth-Token"
DEFAULT_REFRESH_MARGIN = 60.0


class KeystoneError(Exception):
    """Base of the errors this client raises; messages are safe to show and to log."""


class KeystoneUnavailable(KeystoneError):
    """Keystone could not answer (connection refused, timeout, 5xx)."""


class KeystoneRefused(KeystoneError):
    """Keystone refused our own credentials or forbade the call: fix the configuration."""


class TokenNotValid(KeystoneError):
    """The subject token is not valid (unknown, expired, revoked or malformed)."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a validated token says: who, in which project, with which roles, until when (epoch seconds)."""

    user_id: str
    project_id: str | None
    roles: tuple[str, ...]
    expires_at: float
    user_name: str = ""
    project_name: str = ""
    audit_id: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TokenInfo:
        """Parse the `token` object of a Keystone v3 token response; `KeystoneUnavailable` if it is not one."""
        try:
            token = body["token"]
            user = token["user"]
            project = token.get("project") or {}
            roles = tuple(str(role["name"]) for role in token.get("roles") or ())
            audit_ids = token.get("audit_ids") or [None]
            return cls(
                user_id=str(user["id"]),
                user_name=str(user.get("name", "")),
                project_id=str(project["id"]) if project.get("id") else None,
                project_name=str(project.get("name", "")),
                roles=roles,
                expires_at=parse_time(str(token["expires_at"])),
                audit_id=None if audit_ids[0] is None else str(audit_ids[0]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise KeystoneUnavailable(
                f"Keystone answered with a token body Reddwarf cannot read ({exc.__class__.__name__})"
            ) from None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    value: Secret
    info: TokenInfo
    catalog: tuple[Mapping[str, Any], ...] = field(default=())


def parse_time(value: str) -> float:
    """Keystone's `2026-11-22T10:00:00.000000Z` -> epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class KeystoneClient:
    """One Keystone, one identity. Thread-safe: the API calls it from its request threads."""

    def __init__(
        self,
        auth_url: str,
        credentials: Credentials,
        *,
        timeout: float = 5.0,
        verify: bool | str = True,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self._credentials = credentials
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._http = httpx.Client(timeout=timeout, verify=verify, transport=transport)
        self._lock = threading.Lock()
        self._token: IssuedToken | None = None

    @classmethod
    def for_service(cls, settings: KeystoneSettings, **kwargs: Any) -> KeystoneClient:
        """The service user's client, or `KeystoneConfigError` naming the missing settings."""
        return cls(
            settings.require_auth_url(),
            settings.service_credentials(),
            timeout=settings.timeout,
            verify=settings.verify,
            **kwargs,
        )

    def close(self) -> None:
        self._http.close()

    # -- our own token ----------------------------------------------------------------------------------

    def issue(self) -> IssuedToken:
        """A new token for our credentials (`POST /v3/auth/tokens`)."""
        response = self._send("POST", "/auth/tokens", json=self._auth_body())
        if response.status_code in (401, 403):
            raise KeystoneRefused(f"Keystone at {self.auth_url} refused the credentials of {self._who()}")
        self.check(response, "authenticate")
        value = response.headers.get(SUBJECT_TOKEN)
        if not value:
            raise KeystoneUnavailable(f"Keystone at {self.auth_url} issued no token (no {SUBJECT_TOKEN} header)")
        body = response.json()
        info = TokenInfo.from_body(body)
        catalog = tuple(body["token"].get("catalog") or ())
        logger.info("authenticated to Keystone as %s (token audit id %s)", self._who(), info.audit_id)
        return IssuedToken(value=Secret(value), info=info, catalog=catalog)

    def token(self) -> IssuedToken:
        """Our token, fetched again when it is within `refresh_margin` seconds of its expiry."""
        with self._lock:
            current = self._token
            if current is None or current.info.expires_at - self._refresh_margin <= self._clock():
                current = self.issue()
                self._token = current
            return current

    def _forget(self, stale: IssuedToken) -> None:
        with self._lock:
            if self._token is stale:
                self._token = None

    # -- calls ------------------------------------------------------------------------------------------

    def validate(self, subject: str) -> TokenInfo:
        """`GET /v3/auth/tokens` with `X-Subject-Token`: the token's facts, or `TokenNotValid`."""
        response = self.request("GET", "/auth/tokens", headers={SUBJECT_TOKEN: subject})
        if response.status_code in {400, 404}:
            raise TokenNotValid("The token is not valid (unknown, expired or revoked).")
        if response.status_code == 403:
            raise KeystoneRefused(
                f"Keystone at {self.auth_url} does not let {self._who()} validate tokens; "
                "give that user the 'service' role (or 'admin') in its project"
            )
        self.check(response, "validate a token")
        return TokenInfo.from_body(response.json())

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A call authenticated with our token; on 401 the token is fetched again and the call retried once."""
        for attempt in (1, 2):
            issued = self.token()
            all_headers = {AUTH_TOKEN: issued.value.reveal(), **(headers or {})}
            response = self._send(method, path, json=json, params=params, headers=all_headers)
            if response.status_code != 401:
                return response
            self._forget(issued)
            logger.info("Keystone answered 401 to our token (attempt %d); authenticating again", attempt)
        raise KeystoneRefused(f"Keystone at {self.auth_url} keeps refusing fresh tokens of {self._who()}")

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        url = self.auth_url + path
        try:
            response = self._http.request(method, url, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise KeystoneUnavailable(
                f"Keystone at {self.auth_url} cannot be reached ({exc.__class__.__name__})"
            ) from None
        if response.status_code >= 500:
            raise KeystoneUnavailable(f"Keystone at {self.auth_url} answered {response.status_code}")
        return response

    def check(self, response: httpx.Response, what: str) -> None:
        """`KeystoneRefused` with Keystone's own message unless `response` is a 2xx."""
        if response.is_success:
            return
        raise KeystoneRefused(
            f"Keystone at {self.auth_url} answered {response.status_code} when asked to {what}: "
            f"{_keystone_message(response)}"
        )

    def _auth_body(self) -> dict[str, Any]:
        creds = self._credentials
        if isinstance(creds, ApplicationCredential):
            return {
                "auth": {
                    "identity": {
                        "methods": ["application_credential"],
                        "application_credential": {"id": creds.credential_id, "secret": creds.secret.reveal()},
                    }
                }
            }
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": creds.username,
                        "domain": {"name": creds.user_domain_name},
                        "password": creds.password.reveal(),
                    }
                },
            }
        }
        if creds.project_id:
            auth["scope"] = {"project": {"id": creds.project_id}}
        elif creds.project_name:
            auth["scope"] = {"project": {"name": creds.project_name, "domain": {"name": creds.project_domain_name}}}
        return {"auth": auth}

    def _who(self) -> str:
        creds = self._credentials
        if isinstance(creds, ApplicationCredential):
            return f"application credential {creds.credential_id}"
        return f"user {creds.username!r} (domain {creds.user_domain_name!r})"


def _keystone_message(response: httpx.Response) -> str:
    """Keystone's own error message (`{"error": {"message": ...}}`), else the status line."""
    try:
        body = response.json()
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase or str(response.status_code)

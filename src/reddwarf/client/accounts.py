"""Client methods of the databases, users, grants and root routes (`ReddwarfClient.accounts`).

Writes answer 202 and happen a moment later (durable operations): `wait_for` polls a listing with a
deadline. A `{user}` is sent as troveclient sends it: `name` or `name@host`, URL-quoted. Passwords go in
request bodies only, as `Secret`s until the last moment; the root password comes back as a `Secret`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from reddwarf.client.errors import WaitTimeout
from reddwarf.domain.secret import Secret

POLL_INTERVAL = 0.25


class Requester(Protocol):
    def __call__(
        self, method: str, path: str, *, params: dict[str, str | int] | None = None, json: Any = None
    ) -> Any: ...


class DatabaseRef(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    name: str
    character_set: str | None = None
    collate: str | None = None


class DatabaseUser(BaseModel):
    """A user as Trove shows it: name, host and the databases it may use."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    name: str
    host: str = "%"
    databases: list[DatabaseRef] = Field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class RootCredential(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)

    name: str
    password: Secret


def user_segment(name: str, host: str | None = None) -> str:
    """troveclient's `quote_user_host`: `name` or `name@host`, quoted (dots too)."""
    ref = f"{name}@{host}" if host else name
    return quote(ref, safe="").replace(".", "%2e")


def _segment(value: str) -> str:
    if not value:
        raise ValueError("an id or name must not be empty")
    return quote(value, safe="")


class AccountsClient:
    """Databases, users, grants and root of instances, over one `ReddwarfClient` connection."""

    def __init__(self, request: Requester) -> None:
        self._request = request

    # Databases

    def list_databases(self, instance_id: str) -> list[DatabaseRef]:
        """Every database (follows the pagination)."""
        return [DatabaseRef.model_validate(d) for d in self._all(f"{self._base(instance_id)}/databases", "databases")]

    def create_databases(
        self, instance_id: str, names: Sequence[str], *, character_set: str | None = None, collate: str | None = None
    ) -> None:
        body = []
        for name in names:
            entry: dict[str, str] = {"name": name}
            if character_set is not None:
                entry["character_set"] = character_set
            if collate is not None:
                entry["collate"] = collate
            body.append(entry)
        self._request("POST", f"{self._base(instance_id)}/databases", json={"databases": body})

    def delete_database(self, instance_id: str, name: str) -> None:
        self._request("DELETE", f"{self._base(instance_id)}/databases/{_segment(name)}")

    # Users

    def list_users(self, instance_id: str) -> list[DatabaseUser]:
        return [DatabaseUser.model_validate(u) for u in self._all(f"{self._base(instance_id)}/users", "users")]

    def get_user(self, instance_id: str, name: str, host: str | None = None) -> DatabaseUser:
        body = self._request("GET", self._user(instance_id, name, host))
        return DatabaseUser.model_validate(body["user"])

    def create_user(
        self, instance_id: str, name: str, password: Secret, *, host: str | None = None, databases: Sequence[str] = ()
    ) -> None:
        user: dict[str, Any] = {"name": name, "password": password.reveal()}
        if host:
            user["host"] = host
        if databases:
            user["databases"] = [{"name": d} for d in databases]
        self._request("POST", f"{self._base(instance_id)}/users", json={"users": [user]})

    def update_user(
        self, instance_id: str, name: str, host: str | None = None, *, new_name: str | None = None,
        password: Secret | None = None, new_host: str | None = None,
    ) -> None:
        attrs: dict[str, str] = {}
        if new_name is not None:
            attrs["name"] = new_name
        if password is not None:
            attrs["password"] = password.reveal()
        if new_host is not None:
            attrs["host"] = new_host
        self._request("PUT", self._user(instance_id, name, host), json={"user": attrs})

    def delete_user(self, instance_id: str, name: str, host: str | None = None) -> None:
        self._request("DELETE", self._user(instance_id, name, host))

    def list_access(self, instance_id: str, name: str, host: str | None = None) -> list[str]:
        body = self._request("GET", f"{self._user(instance_id, name, host)}/databases")
        return [str(d["name"]) for d in body["databases"]]

    def grant(self, instance_id: str, name: str, databases: Sequence[str], host: str | None = None) -> None:
        body = {"databases": [{"name": d} for d in databases]}
        self._request("PUT", f"{self._user(instance_id, name, host)}/databases", json=body)

    def revoke(self, instance_id: str, name: str, database: str, host: str | None = None) -> None:
        self._request("DELETE", f"{self._user(instance_id, name, host)}/databases/{_segment(database)}")

    # Root

    def root_enabled(self, instance_id: str) -> bool:
        return bool(self._request("GET", f"{self._base(instance_id)}/root")["rootEnabled"])

    def enable_root(self, instance_id: str, password: Secret | None = None) -> RootCredential:
        body = None if password is None else {"password": password.reveal()}
        user = self._request("POST", f"{self._base(instance_id)}/root", json=body)["user"]
        return RootCredential(name=str(user["name"]), password=Secret(str(user["password"])))

    def disable_root(self, instance_id: str) -> None:
        self._request("DELETE", f"{self._base(instance_id)}/root")

    # Waiting for a durable write

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        """Poll `condition` until it holds; `WaitTimeout` naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"{what} did not happen within {timeout:g} s", None)
            time.sleep(min(POLL_INTERVAL, remaining))

    def _all(self, path: str, key: str) -> list[Any]:
        items: list[Any] = []
        marker: str | None = None
        while True:
            params: dict[str, str | int] = {} if marker is None else {"marker": marker}
            body = self._request("GET", path, params=params)
            page = body[key]
            items.extend(page)
            links = body.get("links") or []
            nexts = [link for link in links if link.get("rel") == "next"]
            if not nexts or not page:
                return items
            found = parse_qs(urlsplit(nexts[0]["href"]).query).get("marker")
            if not found or found[0] == marker:
                return items
            marker = found[0]

    @staticmethod
    def _base(instance_id: str) -> str:
        return f"/instances/{_segment(instance_id)}"

    def _user(self, instance_id: str, name: str, host: str | None) -> str:
        if not name:
            raise ValueError("a user name must not be empty")
        return f"{self._base(instance_id)}/users/{user_segment(name, host)}"

"""The accounts of an instance as a tenant's next write must see them: live state plus accepted writes.

Account writes are durable operations applied one at a time, in the order they were accepted. A write is
checked when it is accepted (unknown user or database 404, duplicates 400), and a tenant who sends
create-database, then create-user-with-access-to-it, then revoke, without waiting, expects each to be
judged as if the earlier ones had been applied: Trove's guest applied them before answering. So a check
reads the engine live and then replays, in order, the account operations still pending or running on the
instance (`AccountView.replay`). Pure: no I/O; the payload shapes are those of `services.accounts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reddwarf.domain.accounts import UserInfo
from reddwarf.domain.instance import DatabaseSpec

OP_DATABASES_CREATE = "instance.databases.create"
OP_DATABASES_DELETE = "instance.databases.delete"
OP_USERS_CREATE = "instance.users.create"
OP_USERS_UPDATE = "instance.users.update"
OP_USERS_PASSWORDS = "instance.users.passwords"
OP_USERS_DELETE = "instance.users.delete"
OP_USERS_GRANT = "instance.users.grant"
OP_USERS_REVOKE = "instance.users.revoke"
ACCOUNT_OPERATIONS = (
    OP_DATABASES_CREATE, OP_DATABASES_DELETE, OP_USERS_CREATE, OP_USERS_UPDATE, OP_USERS_PASSWORDS,
    OP_USERS_DELETE, OP_USERS_GRANT, OP_USERS_REVOKE,
)

UserKey = tuple[str, str]  # (name, host)


@dataclass(slots=True)
class AccountView:
    """Database names, and each user's databases, keyed by (name, host)."""

    databases: set[str] = field(default_factory=set)
    users: dict[UserKey, set[str]] = field(default_factory=dict)

    @classmethod
    def live(cls, databases: Iterable[DatabaseSpec], users: Iterable[UserInfo]) -> AccountView:
        return cls(
            databases={d.name for d in databases},
            users={(u.name, u.host): set(u.databases) for u in users},
        )

    def replay(self, operations: Iterable[tuple[str, Mapping[str, Any]]]) -> AccountView:
        """Apply accepted `(kind, payload)` writes, oldest first; other kinds are ignored. Returns self."""
        for kind, payload in operations:
            self._apply(kind, payload)
        return self

    def user_databases(self, name: str, host: str) -> set[str] | None:
        """The user's databases, or None when the user does not exist (or will not, once applied)."""
        return self.users.get((name, host))

    def _apply(self, kind: str, payload: Mapping[str, Any]) -> None:
        if kind == OP_DATABASES_CREATE:
            self.databases.update(str(d["name"]) for d in payload.get("databases", ()))
        elif kind == OP_DATABASES_DELETE:
            name = str(payload["name"])
            self.databases.discard(name)
            for grants in self.users.values():
                grants.discard(name)
        elif kind == OP_USERS_CREATE:
            for user in payload.get("users", ()):
                self.users[(str(user["name"]), str(user["host"]))] = {str(d) for d in user.get("databases", ())}
        elif kind == OP_USERS_UPDATE:
            key = (str(payload["name"]), str(payload["host"]))
            moved_to = (str(payload.get("new_name") or key[0]), str(payload.get("new_host") or key[1]))
            if moved_to != key and key in self.users:
                self.users[moved_to] = self.users.pop(key)
        elif kind == OP_USERS_DELETE:
            self.users.pop((str(payload["name"]), str(payload["host"])), None)
        elif kind == OP_USERS_GRANT:
            granted = self.users.get((str(payload["name"]), str(payload["host"])))
            if granted is not None:
                granted.update(str(d) for d in payload.get("databases", ()) if str(d) in self.databases)
        elif kind == OP_USERS_REVOKE:
            revoked = self.users.get((str(payload["name"]), str(payload["host"])))
            if revoked is not None:
                revoked.discard(str(payload["database"]))

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
from reddwarf.domain.operations import (
    KINDS_BY_LANE,
    DatabaseDelete,
    DatabasesCreate,
    Grant,
    Kind,
    Lane,
    Revoke,
    UserDelete,
    UsersCreate,
    UserUpdate,
    payload_of,
)

UserKey = tuple[str, str]  # (name, host)
ACCOUNT_OPERATIONS = KINDS_BY_LANE[Lane.ACCOUNTS]


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

    def _apply(self, kind: str, raw: Mapping[str, Any]) -> None:
        if kind == Kind.DATABASES_CREATE:
            self.databases.update(d.name for d in payload_of(kind, raw, DatabasesCreate).databases)
        elif kind == Kind.DATABASES_DELETE:
            name = payload_of(kind, raw, DatabaseDelete).name
            self.databases.discard(name)
            for grants in self.users.values():
                grants.discard(name)
        elif kind == Kind.USERS_CREATE:
            for user in payload_of(kind, raw, UsersCreate).users:
                self.users[(user.name, user.host)] = set(user.databases)
        elif kind == Kind.USERS_UPDATE:
            update = payload_of(kind, raw, UserUpdate)
            key = (update.name, update.host)
            moved_to = (update.new_name or update.name, update.new_host or update.host)
            if moved_to != key and key in self.users:
                self.users[moved_to] = self.users.pop(key)
        elif kind == Kind.USERS_DELETE:
            gone = payload_of(kind, raw, UserDelete)
            self.users.pop((gone.name, gone.host), None)
        elif kind == Kind.USERS_GRANT:
            grant = payload_of(kind, raw, Grant)
            granted = self.users.get((grant.name, grant.host))
            if granted is not None:
                granted.update(d for d in grant.databases if d in self.databases)
        elif kind == Kind.USERS_REVOKE:
            revoke = payload_of(kind, raw, Revoke)
            revoked = self.users.get((revoke.name, revoke.host))
            if revoked is not None:
                revoked.discard(revoke.database)

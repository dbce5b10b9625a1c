"""Pure validation of an instance spec against Redis's rules: ACL user names, and no named databases.

Redis has no named databases (only the numbered keyspaces 0-15 that every user may SELECT) and no
per-host accounts, so a spec that asks for either is refused rather than half-honoured. Every refusal is
a `BadRequest` naming the field (`instance.databases`, `instance.users[1].name`, ...).

User names: 1 to 64 characters, no whitespace and no control characters (Redis splits ACL rules and the
ACL file on spaces), and not a reserved name (`default`, Redis's built-in user, which Reddwarf keeps off,
and `reddwarf_admin`, the per-instance admin); the accounts API (`validate_users`) also reserves `root`,
which the root API manages.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec

MAX_NAME_LENGTH = 64
RESERVED_NAMES = frozenset({"default", "reddwarf_admin", "reddwarf_replication"})
ANY_HOST = "%"
ROOT_USER = "root"  # the superuser of the root API: reserved in the accounts API


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a Redis ACL user; None when it is fine."""
    if not name:
        return "The user name must not be empty."
    if len(name) > MAX_NAME_LENGTH:
        return f"The user name must be at most {MAX_NAME_LENGTH} characters long."
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        return "The user name must not contain control characters."
    if any(ch.isspace() for ch in name):
        return "The user name must not contain spaces."
    if name.lower() in RESERVED_NAMES:
        return f"The user name {name!r} is reserved."
    return None


def password_problem(password: str) -> str | None:
    """Why `password` cannot be an ACL user's password; None when it is fine (never quotes the password)."""
    if not password:
        return "The user password must not be empty."
    return None


def host_problem(host: str) -> str | None:
    """Redis users have no host: only Trove's `%` (any host) is accepted."""
    if host != ANY_HOST:
        return f"redis does not support per-host users: the host must be {ANY_HOST!r}, not {host!r}."
    return None


def account_name_problem(name: str) -> str | None:
    """`name_problem` for the accounts API, which also reserves `root` (managed by the root API)."""
    if name.lower() == ROOT_USER:
        return f"The user name {name!r} is reserved; use the root API to manage the superuser."
    return name_problem(name)


def _validate_user(prefix: str, user: UserSpec, *, accounts_api: bool = False) -> None:
    problem = account_name_problem(user.name) if accounts_api else name_problem(user.name)
    if problem:
        raise BadRequest(problem, field=f"{prefix}.name")
    problem = password_problem(user.password.reveal())
    if problem:
        raise BadRequest(problem, field=f"{prefix}.password")
    if user.databases:
        raise BadRequest(
            f"redis does not support databases: user {user.name!r} cannot be given access to databases; "
            "every Redis user reaches the whole keyspace.",
            field=f"{prefix}.databases",
        )
    if host_problem(user.host):
        raise BadRequest(
            f"redis does not support per-host users: user {user.name!r} must not name a host.",
            field=f"{prefix}.host",
        )


def validate_databases(databases: Sequence[DatabaseSpec], field: str = "databases") -> None:
    """Redis has no named databases: any database is refused (an empty list passes)."""
    if databases:
        raise BadRequest(
            "redis does not support databases: remove the databases from the request (Redis has no named databases).",
            field=field,
        )


def _validate_users(users: Sequence[UserSpec], field: str, *, accounts_api: bool) -> None:
    seen: set[str] = set()
    for index, user in enumerate(users):
        _validate_user(f"{field}[{index}]", user, accounts_api=accounts_api)
        if user.name in seen:
            raise BadRequest(f"User {user.name!r} is listed twice.", field=f"{field}[{index}].name")
        seen.add(user.name)


def validate_users(users: Sequence[UserSpec], field: str = "users") -> None:
    """The rules of `validate_spec` for the accounts API's users, which also reserves `root`."""
    _validate_users(users, field, accounts_api=True)


def validate_spec(spec: InstanceSpec) -> None:
    """Raise `BadRequest` naming the field for anything Redis could not honour as asked."""
    validate_databases(spec.databases, "instance.databases")
    _validate_users(spec.users, "instance.users", accounts_api=False)

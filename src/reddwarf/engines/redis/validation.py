"""Pure validation of an instance spec against Redis's rules: ACL user names, and no named databases.

Redis has no named databases (only the numbered keyspaces 0-15 that every user may SELECT) and no
per-host accounts, so a spec that asks for either is refused rather than half-honoured. Every refusal is
a `BadRequest` naming the field (`instance.databases`, `instance.users[1].name`, ...).

User names: 1 to 64 characters, no whitespace and no control characters (Redis splits ACL rules and the
ACL file on spaces), and not a reserved name (`default`, Redis's built-in user, which Reddwarf keeps off,
and `reddwarf_admin`, the per-instance admin).
"""

from __future__ import annotations

import unicodedata

from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import InstanceSpec, UserSpec

MAX_NAME_LENGTH = 64
RESERVED_NAMES = frozenset({"default", "reddwarf_admin"})
ANY_HOST = "%"


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


def _validate_user(index: int, user: UserSpec) -> None:
    prefix = f"instance.users[{index}]"
    problem = name_problem(user.name)
    if problem:
        raise BadRequest(problem, field=f"{prefix}.name")
    password = user.password.reveal()
    if not password:
        raise BadRequest("The user password must not be empty.", field=f"{prefix}.password")
    if user.databases:
        raise BadRequest(
            f"redis does not support databases: user {user.name!r} cannot be given access to databases; "
            "every Redis user reaches the whole keyspace.",
            field=f"{prefix}.databases",
        )
    if user.host != ANY_HOST:
        raise BadRequest(
            f"redis does not support per-host users: user {user.name!r} must not name a host.",
            field=f"{prefix}.host",
        )


def validate_spec(spec: InstanceSpec) -> None:
    """Raise `BadRequest` naming the field for anything Redis could not honour as asked."""
    if spec.databases:
        raise BadRequest(
            "redis does not support databases: remove the databases from the request "
            "(Redis has no named databases).",
            field="instance.databases",
        )
    seen: set[str] = set()
    for index, user in enumerate(spec.users):
        _validate_user(index, user)
        if user.name in seen:
            raise BadRequest(f"User {user.name!r} is listed twice.", field=f"instance.users[{index}].name")
        seen.add(user.name)

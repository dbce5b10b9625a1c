"""A string that must never be shown: repr and str mask it, only `reveal()` gives it back."""

from __future__ import annotations

import secrets
from typing import Final

_MASK: Final = "**********"

# The secrets an instance (or a warm-pool slot) owns in the secrets repository: Reddwarf's admin password, and
# the root password a create with `root_on_create` stores for its `root` step. An operation's own passwords
# are named by `domain.operations.password_secret`.
ADMIN_SECRET: Final = "admin"
ROOT_SECRET: Final = "root"


class Secret:
    """Holds a password or key; logging or printing one shows a mask, never the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK})"

    def __str__(self) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def generate_secret(nbytes: int) -> Secret:
    """A random URL-safe secret from `nbytes` random bytes that never starts with "-": pasted after a
    command-line option (`--os-token`, `mysql -p`, `redis-cli -a`), one that did would be read as an option."""
    while True:
        value = secrets.token_urlsafe(nbytes)
        if not value.startswith("-"):
            return Secret(value)

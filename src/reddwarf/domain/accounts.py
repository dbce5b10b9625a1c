"""What a tenant sees of the accounts inside a running database: users (with host and grants) and root."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A tenant user as Trove shows it: name, host (`%` where the engine has no hosts), granted databases."""

    name: str
    host: str = "%"
    databases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RootHistory:
    """When root was enabled on an instance and by whom (Trove's management API shows it)."""

    enabled_at: float
    user_id: str

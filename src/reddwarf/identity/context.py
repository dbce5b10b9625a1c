"""Who is asking: the project a request is scoped to and the roles its token carries."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class AuthContext:
    """An authenticated caller. `is_admin` widens lookups by id to every project, never the path check."""

    project_id: str
    roles: tuple[str, ...]
    is_admin: bool
    token_id: str | None = None

    @classmethod
    def for_roles(cls, project_id: str, roles: tuple[str, ...], token_id: str | None = None) -> AuthContext:
        return cls(project_id=project_id, roles=roles, is_admin=ADMIN_ROLE in roles, token_id=token_id)

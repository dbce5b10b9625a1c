"""Built-in identity: projects and API tokens.

Only a token's SHA-256 hex digest is stored (the caller hashes); `create_token` refuses anything that does
not look like one, so a raw token cannot end up in a column by mistake. `find_token` returns the record
whatever its expiry or revocation: the caller decides.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Row, bindparam, or_, select, update
from sqlalchemy.orm import Session

from reddwarf.domain.errors import Conflict, NotFound
from reddwarf.store.clock import new_id, now
from reddwarf.store.records import Project, TokenRecord
from reddwarf.store.rows import rowcount, table
from reddwarf.store.tables import ProjectRow, TokenRow

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TOKENS = table(TokenRow)
_TOKEN_BY_HASH = select(_TOKENS).where(_TOKENS.c.token_hash == bindparam("token_hash"))  # every request


class IdentityRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def create_project(self, name: str, project_id: str | None = None) -> Project:
        """Create a project (id: a uuid4 hex, Keystone style, unless given); names are unique."""
        if self._session.scalars(select(ProjectRow.id).where(ProjectRow.name == name)).first() is not None:
            raise Conflict(f"Project {name} already exists.")
        ident = project_id or new_id().replace("-", "")
        if self._session.get(ProjectRow, ident) is not None:
            raise Conflict(f"Project {ident} already exists.")
        row = ProjectRow(id=ident, name=name, created=now())
        self._session.add(row)
        self._session.flush()
        return _project(row)

    def get_project(self, project_id: str) -> Project | None:
        row = self._session.get(ProjectRow, project_id)
        return None if row is None else _project(row)

    def find_project(self, name_or_id: str) -> Project | None:
        """The project with this id, else the one with this name."""
        rows = list(
            self._session.scalars(
                select(ProjectRow).where(or_(ProjectRow.id == name_or_id, ProjectRow.name == name_or_id))
            )
        )
        by_id = [row for row in rows if row.id == name_or_id]
        chosen = by_id or rows
        return _project(chosen[0]) if chosen else None

    def list_projects(self) -> list[Project]:
        return [_project(row) for row in self._session.scalars(select(ProjectRow).order_by(ProjectRow.name))]

    def create_token(
        self,
        project_id: str,
        token_hash: str,
        roles: tuple[str, ...],
        *,
        expires_at: float | None,
        description: str = "",
    ) -> TokenRecord:
        """Record a token by its SHA-256 hex digest (lowercase); never pass the token itself."""
        if not _SHA256_HEX.fullmatch(token_hash):
            raise ValueError("token_hash must be the lowercase SHA-256 hex digest of the token")
        if self._session.get(ProjectRow, project_id) is None:
            raise NotFound("Project", project_id)
        row = TokenRow(
            id=new_id(),
            project_id=project_id,
            token_hash=token_hash,
            roles=list(roles),
            description=description,
            expires_at=expires_at,
            revoked=False,
            created=now(),
        )
        self._session.add(row)
        self._session.flush()
        return _token(row)

    def find_token(self, token_hash: str) -> TokenRecord | None:
        row = self._session.execute(_TOKEN_BY_HASH, {"token_hash": token_hash}).first()
        return None if row is None else _token(row)

    def revoke_token(self, token_id: str) -> bool:
        """Revoke the token; False if there is no such token."""
        result = self._session.execute(update(TokenRow).where(TokenRow.id == token_id).values(revoked=True))
        return rowcount(result) == 1

    def list_tokens(self, project_id: str | None = None) -> list[TokenRecord]:
        query = select(TokenRow).order_by(TokenRow.created, TokenRow.id)
        if project_id is not None:
            query = query.where(TokenRow.project_id == project_id)
        return [_token(row) for row in self._session.scalars(query)]


def _project(row: ProjectRow) -> Project:
    return Project(id=row.id, name=row.name, created=row.created)


def _token(row: TokenRow | Row[Any]) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        project_id=row.project_id,
        roles=tuple(row.roles),
        description=row.description,
        expires_at=row.expires_at,
        revoked=row.revoked,
        created=row.created,
    )

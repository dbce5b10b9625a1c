"""Secrets at rest: values encrypted with the store's Fernet key, addressed by (owner id, name).

Instance admin passwords live under (instance id, "admin"); tenant user passwords from the create body under
(instance id, "user:<name>@<host>"). The plain value never reaches a column.
"""

from __future__ import annotations

import functools
from collections.abc import Collection

from sqlalchemy import Insert, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.store.clock import now
from reddwarf.store.rows import table
from reddwarf.store.secrets import SecretCipher
from reddwarf.store.tables import SecretRow

__all__ = ["ADMIN_SECRET", "SecretRepository", "user_secret_name"]
_SECRETS = table(SecretRow)
_OF_OWNER = select(_SECRETS.c.name, _SECRETS.c.ciphertext).where(_SECRETS.c.owner_id == bindparam("owner_id"))


def user_secret_name(user: str, host: str | None = None) -> str:
    """The secret holding a tenant user's password: keyed by name AND host, since MariaDB's `app@%` and
    `app@10.0.0.1` are two accounts with two passwords. (`host=None` gives the bare prefix/legacy key.)"""
    return f"user:{user}" if host is None else f"user:{user}@{host}"


@functools.cache
def _upsert(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT (owner_id, name) DO UPDATE, built once per dialect (SQLite or PostgreSQL)."""
    statement = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(_SECRETS)
    return statement.on_conflict_do_update(
        index_elements=[_SECRETS.c.owner_id, _SECRETS.c.name],
        set_={"ciphertext": statement.excluded.ciphertext, "updated": statement.excluded.updated},
    )


@functools.cache
def _insert_new(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT (owner_id, name) DO NOTHING RETURNING name, built once per dialect (a row back
    says it was inserted: psycopg's rowcount of such an insert is not)."""
    statement = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(_SECRETS)
    return statement.on_conflict_do_nothing(index_elements=[_SECRETS.c.owner_id, _SECRETS.c.name]).returning(
        _SECRETS.c.name
    )


class SecretRepository:
    def __init__(self, session: Session, cipher: SecretCipher) -> None:
        self._session = session
        self._cipher = cipher

    def put(self, owner_id: str, name: str, value: Secret) -> None:
        """Insert or replace the secret `name` of `owner_id` (one statement: an upsert on the primary key)."""
        timestamp = now()
        values = {"owner_id": owner_id, "name": name, "ciphertext": self._cipher.encrypt(value),
                  "created": timestamp, "updated": timestamp}
        self._session.execute(_upsert(self._session.get_bind().dialect.name), values)

    def add(self, owner_id: str, name: str, value: Secret) -> bool:
        """Insert the secret `name` of `owner_id` unless it exists (then nothing changes: False). On PostgreSQL
        an insert that meets another transaction's uncommitted row waits for it to end."""
        timestamp = now()
        values = {"owner_id": owner_id, "name": name, "ciphertext": self._cipher.encrypt(value),
                  "created": timestamp, "updated": timestamp}
        inserted = self._session.execute(_insert_new(self._session.get_bind().dialect.name), values).first()
        return inserted is not None

    def get(self, owner_id: str, name: str) -> Secret | None:
        row = self._session.get(SecretRow, (owner_id, name))
        return None if row is None else self._cipher.decrypt(row.ciphertext)

    def get_many(self, owner_ids: Collection[str], prefix: str = "") -> dict[str, dict[str, Secret]]:
        """Every secret of `owner_ids` whose name starts with `prefix`: owner id -> name -> value."""
        found: dict[str, dict[str, Secret]] = {}
        if not owner_ids:
            return found
        query = select(SecretRow).where(SecretRow.owner_id.in_(list(owner_ids)))
        if prefix:
            query = query.where(SecretRow.name.startswith(prefix, autoescape=True))
        for row in self._session.scalars(query):
            found.setdefault(row.owner_id, {})[row.name] = self._cipher.decrypt(row.ciphertext)
        return found

    def of_owner(self, owner_id: str, prefix: str = "") -> dict[str, Secret]:
        """Every secret of `owner_id` whose name starts with `prefix`: name -> value."""
        return {
            name: self._cipher.decrypt(ciphertext)
            for name, ciphertext in self._session.execute(_OF_OWNER, {"owner_id": owner_id})
            if name.startswith(prefix)
        }

    def names(self, owner_id: str) -> list[str]:
        query = select(SecretRow.name).where(SecretRow.owner_id == owner_id).order_by(SecretRow.name)
        return list(self._session.scalars(query))

    def delete(self, owner_id: str, name: str) -> bool:
        result = self._session.execute(delete(SecretRow).where(SecretRow.owner_id == owner_id, SecretRow.name == name))
        return bool(getattr(result, "rowcount", 0))

    def delete_owner(self, owner_id: str) -> None:
        """Forget every secret of `owner_id` (e.g. once its instance is deleted)."""
        self._session.execute(delete(SecretRow).where(SecretRow.owner_id == owner_id))

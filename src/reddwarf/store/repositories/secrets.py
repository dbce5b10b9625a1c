"""Secrets at rest: values encrypted with the store's Fernet key, addressed by (owner id, name).

Instance admin passwords live under (instance id, "admin"); tenant user passwords from the create body under
(instance id, "user:<name>@<host>"). The plain value never reaches a column.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from reddwarf.domain.secret import Secret
from reddwarf.store.clock import now
from reddwarf.store.secrets import SecretCipher
from reddwarf.store.tables import SecretRow

ADMIN_SECRET: str = "admin"


def user_secret_name(user: str, host: str | None = None) -> str:
    """The secret holding a tenant user's password: keyed by name AND host, since MariaDB's `app@%` and
    `app@10.0.0.1` are two accounts with two passwords. (`host=None` gives the bare prefix/legacy key.)"""
    return f"user:{user}" if host is None else f"user:{user}@{host}"


class SecretRepository:
    def __init__(self, session: Session, cipher: SecretCipher) -> None:
        self._session = session
        self._cipher = cipher

    def put(self, owner_id: str, name: str, value: Secret) -> None:
        """Insert or replace the secret `name` of `owner_id`."""
        ciphertext = self._cipher.encrypt(value)
        timestamp = now()
        row = self._session.get(SecretRow, (owner_id, name))
        if row is None:
            self._session.add(
                SecretRow(owner_id=owner_id, name=name, ciphertext=ciphertext, created=timestamp, updated=timestamp)
            )
        else:
            row.ciphertext = ciphertext
            row.updated = timestamp
        self._session.flush()

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

    def names(self, owner_id: str) -> list[str]:
        query = select(SecretRow.name).where(SecretRow.owner_id == owner_id).order_by(SecretRow.name)
        return list(self._session.scalars(query))

    def delete(self, owner_id: str, name: str) -> bool:
        result = self._session.execute(delete(SecretRow).where(SecretRow.owner_id == owner_id, SecretRow.name == name))
        return bool(getattr(result, "rowcount", 0))

    def transfer(self, from_owner: str, to_owner: str, name: str) -> bool:
        """Move the secret `name` of `from_owner` to `to_owner` (a warm-pool slot's admin password goes to
        the instance that claimed the slot); False if there was none."""
        result = self._session.execute(
            update(SecretRow)
            .where(SecretRow.owner_id == from_owner, SecretRow.name == name)
            .values(owner_id=to_owner, updated=now())
        )
        return bool(getattr(result, "rowcount", 0))

    def delete_owner(self, owner_id: str) -> None:
        """Forget every secret of `owner_id` (e.g. once its instance is deleted)."""
        self._session.execute(delete(SecretRow).where(SecretRow.owner_id == owner_id))

"""Events: the short history of a resource (what happened, when), shown to operators and tenants."""

from __future__ import annotations

import builtins

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from reddwarf.domain.events import Event
from reddwarf.store.clock import now
from reddwarf.store.rows import table
from reddwarf.store.tables import EventRow

_INSERT = insert(table(EventRow))


class EventRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, resource_id: str, kind: str, message: str) -> None:
        values = {"resource_id": resource_id, "kind": kind, "message": message, "created": now()}
        self._session.execute(_INSERT, values)

    def list(self, resource_id: str, limit: int = 100) -> builtins.list[Event]:
        """The newest `limit` events of `resource_id`, oldest first (newest last)."""
        rows = list(
            self._session.scalars(
                select(EventRow)
                .where(EventRow.resource_id == resource_id)
                .order_by(EventRow.id.desc())
                .limit(max(limit, 0))
            )
        )
        return [
            Event(resource_id=row.resource_id, kind=row.kind, message=row.message, created=row.created)
            for row in reversed(rows)
        ]

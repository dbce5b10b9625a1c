"""(address, port) allocations of the local runtime: one pair per instance, never one pair for two.

UNIQUE(address, port) in the database is the guarantee; `claim` inserts inside a SAVEPOINT and reports a
taken pair as False, so the surrounding unit of work stays usable and the caller can try the next pair.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reddwarf.store.clock import now
from reddwarf.store.tables import AddressRow


class AddressRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def claim(self, instance_id: str, address: str, port: int) -> bool:
        """Allocate (address, port) to `instance_id`. True if it is now theirs (also when it already was);
        False if another instance holds the pair. An instance holds one pair: release it before claiming
        another (claiming a different pair while holding one raises ValueError)."""
        held = self._session.get(AddressRow, instance_id)
        if held is not None:
            if (held.address, held.port) == (address, port):
                return True
            raise ValueError(f"instance {instance_id} already holds {held.address}:{held.port}")
        try:
            with self._session.begin_nested():
                self._session.add(AddressRow(instance_id=instance_id, address=address, port=port, created=now()))
        except IntegrityError:
            return False
        return True

    def get(self, instance_id: str) -> tuple[str, int] | None:
        row = self._session.get(AddressRow, instance_id)
        return None if row is None else (row.address, row.port)

    def release(self, instance_id: str) -> None:
        """Free the instance's pair (idempotent)."""
        self._session.execute(delete(AddressRow).where(AddressRow.instance_id == instance_id))

    def in_use(self) -> set[tuple[str, int]]:
        return {(address, port) for address, port in self._session.execute(select(AddressRow.address, AddressRow.port))}

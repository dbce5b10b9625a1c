"""Storage reservations: the one capacity model of the host's storage.

Every volume the runtime makes (an instance's, a warm-pool slot's; later a branch's or a snapshot's) holds a
reservation of its full size from the moment it is accepted until the volume is gone, so that sparse images
filling up can never run the host out of space under another tenant. `reserve` admits a new reservation only
if the sum of all of them stays within the limit the caller computed (the runtime's capacity times the
operator's overcommit ratio); the check and the insert are serialised across processes (SQLite: the write
transaction; PostgreSQL: a transaction-scoped advisory lock).
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from reddwarf.store.clock import now
from reddwarf.store.rows import rowcount, xact_lock
from reddwarf.store.tables import StorageReservationRow


class ReservationRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _serialise(self) -> None:
        xact_lock(self._session, "reddwarf:storage")

    def reserve(self, holder_id: str, kind: str, size_bytes: int, limit_bytes: int | None) -> bool:
        """Hold `size_bytes` for `holder_id` unless all reservations would then exceed `limit_bytes` (None: no
        limit). True when held (also when the holder already holds at least that much); False changes nothing.
        A holder asking for more than it holds (a volume that grows) is admitted for the difference."""
        self._serialise()
        held = self._session.get(StorageReservationRow, holder_id, populate_existing=True)
        if held is not None and held.size_bytes >= size_bytes:
            return True
        if limit_bytes is not None:
            extra = size_bytes - (held.size_bytes if held is not None else 0)
            if self.total() + extra > limit_bytes:
                return False
        if held is None:
            self._session.add(
                StorageReservationRow(holder_id=holder_id, kind=kind, size_bytes=size_bytes, created=now())
            )
        else:
            held.size_bytes = size_bytes
        self._session.flush()
        return True

    def held(self, holder_id: str) -> int | None:
        row = self._session.get(StorageReservationRow, holder_id, populate_existing=True)
        return None if row is None else row.size_bytes

    def total(self) -> int:
        return int(self._session.scalar(select(func.coalesce(func.sum(StorageReservationRow.size_bytes), 0))) or 0)

    def transfer(self, from_id: str, to_id: str, kind: str) -> bool:
        """Hand `from_id`'s reservation to `to_id` (a warm-pool slot's volume becoming an instance's)."""
        self._session.execute(delete(StorageReservationRow).where(StorageReservationRow.holder_id == to_id))
        result = self._session.execute(
            update(StorageReservationRow)
            .where(StorageReservationRow.holder_id == from_id)
            .values(holder_id=to_id, kind=kind)
        )
        return rowcount(result) == 1

    def release(self, holder_id: str) -> None:
        """Give the holder's storage back (idempotent): its volume is gone."""
        self._session.execute(delete(StorageReservationRow).where(StorageReservationRow.holder_id == holder_id))

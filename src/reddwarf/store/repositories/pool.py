"""Warm-pool slots (see `reddwarf.domain.pool`): add, mark ready or failed, claim, retire, remove.

`claim` is the one contended write: two creates of one profile must never take one slot. It deletes the
chosen row only while it is still `ready` (a compare-and-delete) and moves on to the next candidate when it
lost the race, so it needs no lock and works the same on SQLite and PostgreSQL. `take` is what a create
uses: a claim plus the hand-over of the slot's address and admin password, in the caller's transaction.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from reddwarf.domain.pool import PoolProfile, PoolSlot, SlotState
from reddwarf.store.clock import new_id, now
from reddwarf.store.repositories.reservations import ReservationRepository
from reddwarf.store.repositories.secrets import ADMIN_SECRET
from reddwarf.store.rows import rowcount, table, xact_lock
from reddwarf.store.tables import AddressRow, PoolSlotRow, SecretRow

log = logging.getLogger(__name__)

# The statements of `take`, on the path of every create: built once, run with bound parameters.
_SLOTS, _ADDRESSES, _SECRETS = table(PoolSlotRow), table(AddressRow), table(SecretRow)
_READY_IDS = (
    select(_SLOTS.c.id)
    .where(
        _SLOTS.c.datastore == bindparam("datastore"),
        _SLOTS.c.version == bindparam("version"),
        _SLOTS.c.flavor_id == bindparam("flavor_id"),
        _SLOTS.c.volume_gb == bindparam("volume_gb"),
        _SLOTS.c.state == SlotState.READY.value,
    )
    .order_by(_SLOTS.c.created, _SLOTS.c.id)
    .limit(5)
)
_DELETE_IF_READY = delete(_SLOTS).where(_SLOTS.c.id == bindparam("slot_id"), _SLOTS.c.state == SlotState.READY.value)
_MOVE_ADDRESS = (
    update(_ADDRESSES)
    .where(_ADDRESSES.c.instance_id == bindparam("from_id"))
    .values(instance_id=bindparam("to_id"))
    .returning(_ADDRESSES.c.address, _ADDRESSES.c.port)
)
_HAS_SECRET = select(_SECRETS.c.name).where(
    _SECRETS.c.owner_id == bindparam("owner_id"), _SECRETS.c.name == bindparam("name_")
)
_DROP_SECRET = delete(_SECRETS).where(
    _SECRETS.c.owner_id == bindparam("owner_id"), _SECRETS.c.name == bindparam("name_")
)
_MOVE_SECRET = (
    update(_SECRETS)
    .where(_SECRETS.c.owner_id == bindparam("from_id"), _SECRETS.c.name == bindparam("name_"))
    .values(owner_id=bindparam("to_id"), updated=bindparam("moment"))
)


@dataclass(frozen=True, slots=True)
class Taken:
    """A slot handed to an instance: the instance's runtime id, address and port from now on."""

    slot_id: str
    address: str
    port: int


class PoolRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def serialise(self) -> None:
        """Hold the pool's lock until the unit of work ends, so that two workers comparing the pool with its
        target cannot both top it up. On SQLite the write transaction (BEGIN IMMEDIATE) already is one."""
        xact_lock(self._session, "reddwarf:pool")

    def add(self, profile: PoolProfile) -> str:
        """A new `building` slot of `profile`; returns its id."""
        timestamp = now()
        slot_id = new_id()
        self._session.add(
            PoolSlotRow(
                id=slot_id, datastore=profile.datastore, version=profile.version, flavor_id=profile.flavor_id,
                volume_gb=profile.volume_gb, state=SlotState.BUILDING.value, error="", created=timestamp,
                updated=timestamp,
            )
        )
        self._session.flush()
        return slot_id

    def get(self, slot_id: str) -> PoolSlot | None:
        row = self._session.get(PoolSlotRow, slot_id, populate_existing=True)
        return None if row is None else _slot(row)

    def list(self) -> builtins.list[PoolSlot]:
        rows = self._session.scalars(select(PoolSlotRow).order_by(PoolSlotRow.created, PoolSlotRow.id))
        return [_slot(row) for row in rows]

    def mark(
        self, slot_id: str, state: SlotState, *, only_from: Collection[SlotState], error: str = "",
        fingerprint: str = "",
    ) -> bool:
        """Move the slot to `state` if it is in one of `only_from`; True if it moved."""
        values: dict[str, object] = {"state": state.value, "updated": now()}
        if error:
            values["error"] = error
        if fingerprint:
            values["fingerprint"] = fingerprint
        result = self._session.execute(
            update(PoolSlotRow)
            .where(PoolSlotRow.id == slot_id, PoolSlotRow.state.in_([s.value for s in only_from]))
            .values(**values)
        )
        return rowcount(result) == 1

    def claim(self, profile: PoolProfile) -> str | None:
        """Take the oldest ready slot of `profile` (its row is deleted); its id, or None if there is none."""
        for slot_id in self._ready_ids(profile):
            if self._delete_if_ready(slot_id):
                return slot_id
        return None

    def take(self, profile: PoolProfile, instance_id: str) -> Taken | None:
        """Claim a ready slot of `profile` for `instance_id` and hand it the slot's address and admin
        password (the instance's own admin password, if any, is dropped: the slot's server knows the
        slot's). None when no slot is ready. A claimed slot without an address or a password (a damaged
        store: the build records both before `ready`) is never handed out: it goes back as `failed`, for the
        keeper to destroy, and the next ready slot is tried."""
        for slot_id in self._ready_ids(profile):
            if not self._delete_if_ready(slot_id):
                continue  # another create took it first
            # Both the address and the password must be there before anything of the instance's changes
            # (a late claim's instance already owns an admin password, which must survive a damaged slot).
            has_password = self._session.execute(_HAS_SECRET, {"owner_id": slot_id, "name_": ADMIN_SECRET}).first()
            pair = None if has_password is None else self._session.execute(
                _MOVE_ADDRESS, {"from_id": slot_id, "to_id": instance_id}
            ).first()
            if pair is not None:
                self._session.execute(_DROP_SECRET, {"owner_id": instance_id, "name_": ADMIN_SECRET})
                self._session.execute(
                    _MOVE_SECRET, {"from_id": slot_id, "to_id": instance_id, "name_": ADMIN_SECRET, "moment": now()}
                )
                ReservationRepository(self._session).transfer(slot_id, instance_id, "instance")
                return Taken(slot_id, pair.address, pair.port)
            log.error("warm-pool slot %s was ready without an address or an admin password", slot_id)
            timestamp = now()
            self._session.add(
                PoolSlotRow(
                    id=slot_id, datastore=profile.datastore, version=profile.version,
                    flavor_id=profile.flavor_id, volume_gb=profile.volume_gb, state=SlotState.FAILED.value,
                    error="it was ready without an address or an admin password", fingerprint="",
                    created=timestamp, updated=timestamp,
                )
            )
            self._session.flush()
        return None

    def _ready_ids(self, profile: PoolProfile) -> builtins.list[str]:
        parameters = {"datastore": profile.datastore, "version": profile.version, "flavor_id": profile.flavor_id,
                      "volume_gb": profile.volume_gb}
        return list(self._session.scalars(_READY_IDS, parameters))

    def _delete_if_ready(self, slot_id: str) -> bool:
        return rowcount(self._session.execute(_DELETE_IF_READY, {"slot_id": slot_id})) == 1

    def remove(self, slot_id: str) -> None:
        """Forget the slot and the storage its volume held (its volume is gone, or was never made)."""
        self._session.execute(delete(PoolSlotRow).where(PoolSlotRow.id == slot_id))
        ReservationRepository(self._session).release(slot_id)


def _slot(row: PoolSlotRow) -> PoolSlot:
    return PoolSlot(
        id=row.id,
        profile=PoolProfile(row.datastore, row.version, row.flavor_id, row.volume_gb),
        state=SlotState(row.state),
        created=row.created,
        updated=row.updated,
        error=row.error,
        fingerprint=row.fingerprint,
    )

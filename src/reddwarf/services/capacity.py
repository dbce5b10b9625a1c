"""Admission of volumes against the host's storage: the one capacity model every volume goes through.

Each volume (an instance's now; a warm-pool slot's through the pool keeper; later a branch's or a
snapshot's) reserves its full size in the store (`uow.reservations`) in the same unit of work that records
it, or the request is refused before anything exists. The sum of all reservations may reach the runtime's
storage capacity (free space plus what the volumes already occupy) times the operator's
`storage_overcommit_ratio`; at 1.0 a volume filling up can never make another tenant's writes fail.
Reservations are released when the volume is gone (the delete reconciler, the pool's destroy).
"""

from __future__ import annotations

import logging

from reddwarf.domain.capacity import GIB, storage_limit
from reddwarf.domain.errors import ServiceUnavailable
from reddwarf.store.uow import UnitOfWork

log = logging.getLogger(__name__)


class InsufficientStorage(ServiceUnavailable):
    """The host cannot hold another volume of this size now (503 serviceUnavailable: not the tenant's quota)."""


def limit(capacity: int | None, ratio: float) -> int | None:
    """The most all reservations together may hold: the runtime's capacity times the overcommit ratio."""
    return storage_limit(capacity, ratio)


def reserve_volume(uow: UnitOfWork, holder_id: str, kind: str, size_gb: int, limit_bytes: int | None) -> None:
    """Reserve `size_gb` for `holder_id` in `uow`, or raise `InsufficientStorage` (the unit of work then rolls
    back: nothing of the request is kept)."""
    if uow.reservations.reserve(holder_id, kind, size_gb * GIB, limit_bytes):
        return
    log.warning(
        "storage admission refused a %d GB volume for %s %s: %d bytes reserved of a limit of %s",
        size_gb, kind, holder_id, uow.reservations.total(), limit_bytes,
    )
    raise InsufficientStorage(
        f"There is not enough storage on this host for a {size_gb} GB volume right now; "
        "try a smaller volume, or later."
    )

"""The capacity rule of the host's storage, one for every volume (pure; see `services.capacity`).

Every volume reserves its full size. All reservations together may hold at most the runtime's storage
capacity (free space plus what the volumes already occupy) times the operator's overcommit ratio.
"""

from __future__ import annotations

import math

GIB = 1024**3


def storage_limit(capacity_bytes: int | None, overcommit_ratio: float) -> int | None:
    """The most all reservations together may hold; None (no limit) when the runtime accounts no storage."""
    return None if capacity_bytes is None else math.floor(capacity_bytes * overcommit_ratio)

"""The warm pool: servers built ahead of time so that a create only has to claim one.

A `PoolProfile` is what a slot was built for: datastore, version, flavor and volume size. Everything a
server's first start depends on (the data directory's initialisation, its configuration, its memory and
cpu limits, its volume, its address) follows from the profile, so a create whose spec has the same profile
can take a ready slot as it is: the tenant's databases and users are the only work left.

Slot states: `building` (a `pool.build` operation is making it), `ready` (its server was started and
answered; a create may claim it), `failed` (the build gave up; its resources are being removed, and the
row stays as a tombstone that pauses the profile's pool for a while), `retiring` (no longer wanted: being
destroyed). A claimed slot has no row: its resources belong to the instance that claimed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SlotState(StrEnum):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"
    RETIRING = "retiring"


@dataclass(frozen=True, slots=True)
class PoolProfile:
    datastore: str
    version: str
    flavor_id: str
    volume_gb: int

    def __str__(self) -> str:
        return f"{self.datastore} {self.version} (flavor {self.flavor_id}, {self.volume_gb} GB)"


@dataclass(frozen=True, slots=True)
class PoolSlot:
    id: str
    profile: PoolProfile
    state: SlotState
    created: float
    updated: float
    error: str = ""

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

from reddwarf.domain.instance import InstanceSpec


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
    fingerprint: str = ""


def profile_of(spec: InstanceSpec) -> PoolProfile:
    return PoolProfile(spec.datastore, spec.datastore_version, spec.flavor_id, spec.volume_size_gb)


@dataclass(frozen=True, slots=True)
class PoolTarget:
    """What the pool should hold: `size` slots of (`flavor_id`, `volume_gb`) per installed engine version of
    `datastores` ("postgresql" for every version, or "postgresql:15"; empty: every engine)."""

    size: int = 0
    flavor_id: str = "1"
    volume_gb: int = 1
    failure_pause: float = 60.0
    datastores: tuple[str, ...] = ()

    def wants(self, datastore: str, version: str) -> bool:
        return self.size > 0 and (
            not self.datastores or datastore in self.datastores or f"{datastore}:{version}" in self.datastores
        )

    def profile(self, datastore: str, version: str) -> PoolProfile:
        return PoolProfile(datastore, version, self.flavor_id, self.volume_gb)

    def covers(self, spec: InstanceSpec) -> bool:
        """A create of `spec` may take a slot: its flavor, volume size and engine version are pooled."""
        return (spec.flavor_id, spec.volume_size_gb) == (self.flavor_id, self.volume_gb) and self.wants(
            spec.datastore, spec.datastore_version
        )

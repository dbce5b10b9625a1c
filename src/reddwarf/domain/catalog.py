"""What a tenant can ask for: flavors and datastore versions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

# A fixed namespace so that datastore and version ids are the same on every machine and every restart.
REDDWARF_NAMESPACE = uuid.UUID("7c5a3a4e-6f7b-5d1c-9a57-3c2d6f1e8b90")


def datastore_id(datastore: str) -> str:
    return str(uuid.uuid5(REDDWARF_NAMESPACE, f"datastore:{datastore}"))


def datastore_version_id(datastore: str, version: str) -> str:
    return str(uuid.uuid5(REDDWARF_NAMESPACE, f"datastore-version:{datastore}:{version}"))


@dataclass(frozen=True, slots=True)
class Flavor:
    """An operator-defined size: RAM in MiB and virtual CPUs (a cgroup CPU quota on the local runtime)."""

    id: str
    name: str
    ram_mb: int
    vcpus: int


@dataclass(frozen=True, slots=True)
class DatastoreVersion:
    """One installed version of an engine: `name` as users type it ("15"), `number` the full one ("15.18")."""

    datastore: str
    name: str
    number: str
    bin_dir: str
    active: bool = True

    @property
    def id(self) -> str:
        return datastore_version_id(self.datastore, self.name)

    @property
    def datastore_id(self) -> str:
        return datastore_id(self.datastore)

"""Snapshots: crash-consistent point-in-time images of an instance's volume, kept on the host's copy-on-write
pool, from which branches are made (`restorePoint: {"snapshotRef": ...}`; docs/branches.md).

A snapshot is taken in a fraction of a second (the engine quiesces, the filesystem freezes while the image
is reflinked) and costs room only as its instance's blocks are rewritten. It outlives its instance. The
source's admin password, which a branch of it knows until adopted, is kept as its secret
`SOURCE_ADMIN_SECRET` (`domain.backup`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reddwarf.domain.status import Fault


class SnapshotStatus(StrEnum):
    NEW = "NEW"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DELETE_FAILED = "DELETE_FAILED"


@dataclass(slots=True)
class Snapshot:
    id: str
    project_id: str
    name: str
    description: str | None
    instance_id: str
    datastore: str
    datastore_version: str
    volume_size_gb: int
    status: SnapshotStatus = SnapshotStatus.NEW
    fault: Fault | None = None
    deleting: bool = False
    created: float = 0.0
    updated: float = 0.0

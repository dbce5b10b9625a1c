"""Backups as the control plane records them, and the plans engines give for taking and restoring one.

A backup is one artifact (a byte stream an engine's own tool writes, stored compressed, checksummed and
optionally encrypted by `reddwarf.storage`) plus what a restore needs: the engine's metadata (LSNs, GTID),
small side files (PostgreSQL's backup manifest), the chain of parents of an incremental, and the source's
admin credential (a secret owned by the backup, wrapped like every secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reddwarf.domain.status import Fault
from reddwarf.domain.workload import CommandSpec, ToolSpec

# The secret a backup owns: the source instance's admin password when the backup was taken (a restore logs
# in with it once, then rotates it to the new instance's own).
SOURCE_ADMIN_SECRET = "source_admin"
# Trove's default container (`backup_swift_container`): a storage prefix here.
DEFAULT_CONTAINER = "database_backups"
NAME_MAX = 255


class BackupStatus(StrEnum):
    """Trove's backup statuses (`trove/backup/state.py`) that Reddwarf writes."""

    NEW = "NEW"
    BUILDING = "BUILDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DELETE_FAILED = "DELETE_FAILED"


class BackupPhase(StrEnum):
    """Where a running backup is (an extension field of the view)."""

    QUEUED = "queued"
    PREPARING = "preparing"
    STREAMING = "streaming"
    FINISHING = "finishing"
    DONE = "done"
    DELETING = "deleting"


@dataclass(slots=True)
class Backup:
    """The recorded backup. `metadata` is the engine's (JSON-safe), `manifest` the storage's (chunks and
    checksums, `storage.artifact.Manifest.to_dict()`); both are written once, by the reconciler, when the
    backup completes."""

    id: str
    project_id: str
    name: str
    description: str | None
    instance_id: str
    datastore: str
    datastore_version: str
    datastore_version_id: str
    status: BackupStatus
    strategy: str
    container: str
    location: str = ""
    parent_id: str | None = None
    incremental: bool = False
    size_bytes: int | None = None  # stored (compressed) bytes
    raw_bytes: int | None = None  # the tool's stream, uncompressed
    bytes_done: int = 0
    phase: BackupPhase = BackupPhase.QUEUED
    metadata: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    fault: Fault | None = None
    created: float = 0.0
    updated: float = 0.0
    deleting: bool = False
    # Verified backups (`REDDWARF_VERIFY_BACKUPS`): None until a verification ended; then whether the backup
    # restored and passed the engine's checks, when, and what was checked (or why it failed).
    verified: bool | None = None
    verified_at: float | None = None
    verification: str | None = None
    # The snapshot the backup was streamed from (`from_snapshot`): None, streamed from the running instance.
    # Such a backup is never an incremental's parent (its server's history left the instance's at the
    # snapshot); a restore on this host branches from the snapshot while it is kept.
    snapshot_id: str | None = None


@dataclass(frozen=True, slots=True)
class BackupStrategies:
    """What an engine version can do for backups. `incremental` is None when it has none; `reason` then
    says why (shown in the 4xx a request for one gets)."""

    full: str
    incremental: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ParentBackup:
    """What an incremental needs of its parent: the engine metadata it recorded and its side files."""

    backup_id: str
    metadata: Mapping[str, Any]
    side_files: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What an engine records of a finished backup: JSON-safe metadata and small side files (each at most a
    few MiB, stored beside the artifact and checksummed in its manifest)."""

    metadata: Mapping[str, Any]
    side_files: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One backup of a restore chain (oldest, the full one, first) as the engine sees it."""

    backup_id: str
    strategy: str
    metadata: Mapping[str, Any]
    side_files: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class ArchiveSpec:
    """Where an instance's server archives its log files (PostgreSQL's WAL) for the control plane to ship to
    backup storage: a directory of the instance's own on its volume (the server writes there and nowhere
    else), the names of finished files (a regular expression matched whole; anything else there, such as a
    file being written, is left alone) and the largest size one may have."""

    directory: str
    pattern: str
    max_bytes: int


@dataclass(frozen=True, slots=True)
class ArchivePiece:
    """Bytes `start`..`end` (end None: to the end) of one shipped archive file, as a WAL-based incremental
    backup takes them; in the backup's stream as a tar member named `<name>.<start>`."""

    name: str
    start: int = 0
    end: int | None = None


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """How an engine restores a chain into a new instance's empty volume.

    `extract[i]` runs (as the new instance's OS user) with link i's artifact, verified, on its stdin; it
    writes into the instance's scratch directory (`Placement.scratch_dir`), never into the data directory.
    Then `init` runs as the instance's init commands (combine, prepare, move into the data directory,
    verify, remove the staging area), after which the runtime writes the instance's init marker.
    `extract[0]` must start from an empty staging area (a retried restore extracts everything again)."""

    extract: tuple[ToolSpec, ...]
    init: tuple[CommandSpec, ...]

"""Shipping the log files servers archive (PostgreSQL's WAL) to backup storage, and reading them back.

A server archives each finished log file into a directory of the instance's own on its volume
(`Backups.archive()`); the control plane reads it (symlink-safe, `Runtime.read_archived`), writes it to
backup storage as an artifact (compressed, checksummed, encrypted like a backup) under
`<project>/_archive/<instance>/<name>`, records it in the store (`archived_logs`), and only then removes the
local file: the archive never grows on the tenant's volume beyond what is not shipped yet. An archive that
cannot ship (storage down) is a Degraded condition (`ArchiveNotShipping`) with the reason, cleared by the
next shipment that works. A WAL-based incremental backup ships what is archived first, then takes its pieces
from storage; point-in-time restore will read the same files.

Shipping an instance is serialized across workers and processes by a store lease named after it.
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
import time
from collections.abc import Iterator, Sequence

from reddwarf.domain.backup import ArchivePiece, ArchiveSpec
from reddwarf.domain.conditions import Observation, Reason
from reddwarf.domain.errors import PermanentError, ReddwarfError, TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.status import ConditionType, InstanceStatus
from reddwarf.storage.artifact import ArtifactWriter, Manifest, read_artifact
from reddwarf.storage.base import ArtifactError
from reddwarf.workflows.reconcilers.deps import BackupFiles, ReconcilerDeps

log = logging.getLogger(__name__)

# How long one process may hold an instance's shipping lease without renewing it; files shipped per look.
LEASE_TTL = 120.0
BATCH = 64
# Instances whose servers are expected to archive (a server being built or deleted is left alone).
_SHIPPING = frozenset({InstanceStatus.ACTIVE, InstanceStatus.BACKUP, InstanceStatus.REBOOT})


def archive_prefix(instance: Instance) -> str:
    return f"{instance.project_id}/_archive/{instance.id}/"


class ArchiveShipper:
    """Ships every instance's archived log files (a `Periodic` task of the workers; `ship` is also called by
    a WAL-based incremental backup for its own instance)."""

    def __init__(self, deps: ReconcilerDeps, owner: str) -> None:
        self.deps = deps
        self.owner = owner

    def run(self) -> None:
        deps = self.deps
        if deps.backups is None:
            return
        with deps.db.unit_of_work(write=False) as uow:
            instances = [i for i in uow.instances.list(None) if i.status in _SHIPPING and i.endpoint is not None]
        for instance in instances:
            try:
                self.ship(instance)
            except ReddwarfError as exc:
                log.warning("instance %s: archived logs not shipped: %s", instance.id, exc.message)

    def spec(self, instance: Instance) -> ArchiveSpec | None:
        deps = self.deps
        try:
            version = deps.version_for(instance.spec)
        except PermanentError:
            return None
        return deps.engine(instance).backups(version).archive(deps.placement(instance))

    def ship(self, instance: Instance) -> int | None:
        """Ship what the instance has archived; how many files, or None when another process ships it right
        now. `TemporaryError` when storage refused (the instance is then Degraded)."""
        deps = self.deps
        spec = self.spec(instance)
        if spec is None or deps.backups is None:
            return 0
        placement = deps.placement(instance)
        pattern = re.compile(spec.pattern)
        # At most `BATCH` files per look: one instance's backlog (or a tenant's junk) never starves the others.
        names = [n for n in deps.runtime.archived(placement, spec.directory) if pattern.fullmatch(n)][:BATCH]
        if not names:
            return 0
        lease = f"archive:{instance.id}"
        with deps.db.unit_of_work() as uow:
            if not uow.leases.hold(lease, self.owner, LEASE_TTL):
                return None
        shipped = 0
        try:
            for name in names:
                try:
                    data = deps.runtime.read_archived(placement, spec.directory, name, spec.max_bytes)
                except PermanentError as exc:  # not a regular file, too large: it would block every later one
                    self._stalled(instance, f"archived log {name} cannot be read: {exc.message}")
                    raise
                try:
                    manifest = _store(deps.backups, archive_prefix(instance) + name, data)
                except (TemporaryError, PermanentError, OSError) as exc:
                    reason = exc.message if isinstance(exc, ReddwarfError) else str(exc)
                    self._stalled(instance, f"archived log {name} cannot be shipped to backup storage: {reason}")
                    raise TemporaryError(f"archived log {name} not shipped: {reason}") from None
                with deps.db.unit_of_work() as uow:
                    uow.archived_logs.record(instance.id, name, manifest.key, len(data), manifest.to_dict())
                    uow.leases.hold(lease, self.owner, LEASE_TTL)
                deps.runtime.remove_archived(placement, spec.directory, name)
                shipped += 1
        finally:
            with deps.db.unit_of_work() as uow:
                uow.leases.release(lease, self.owner)
        self._shipping(instance)
        log.info("instance %s: shipped %d archived log file(s)", instance.id, shipped)
        return shipped

    def _stalled(self, instance: Instance, message: str) -> None:
        with self.deps.db.unit_of_work() as uow:
            current = uow.instances.get(instance.id)
            if current is not None:
                uow.instances.record(instance.id, Observation.ARCHIVE_STALLED, message,
                                     generation=current.generation)

    def _shipping(self, instance: Instance) -> None:
        degraded = {c.type: c for c in instance.conditions}.get(ConditionType.DEGRADED)
        if degraded is None or degraded.reason != Reason.ARCHIVE_NOT_SHIPPING:
            return
        with self.deps.db.unit_of_work() as uow:
            current = uow.instances.get(instance.id)
            if current is not None:
                uow.instances.record(instance.id, Observation.ARCHIVE_SHIPPING, "archived logs ship again",
                                     generation=current.generation)


def _store(files: BackupFiles, key: str, data: bytes) -> Manifest:
    writer = ArtifactWriter(files.storage, key, files.options, files.keyring)
    try:
        writer.write(data)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def shipped_names(deps: ReconcilerDeps, instance_id: str) -> list[str]:
    with deps.db.unit_of_work(write=False) as uow:
        return uow.archived_logs.names(instance_id)


def stream_pieces(deps: ReconcilerDeps, instance_id: str, pieces: Sequence[ArchivePiece]) -> Iterator[bytes]:
    """A tar stream of `pieces` of shipped files (members `<name>.<start>`), each read back verified."""
    files = deps.backups
    if files is None:
        raise PermanentError("No backup storage is configured on this worker.")
    sink = _Sink()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as archive:  # type: ignore[call-overload]
        for piece in pieces:
            with deps.db.unit_of_work(write=False) as uow:
                found = uow.archived_logs.get(instance_id, piece.name)
            if found is None:
                raise PermanentError(f"archived log {piece.name} of instance {instance_id} was never shipped")
            try:
                data = b"".join(read_artifact(files.storage, Manifest.from_dict(found[1]), files.keyring))
            except ArtifactError as exc:
                raise PermanentError(f"archived log {piece.name} cannot be read: {exc.message}") from None
            body = data[piece.start:piece.end]
            info = tarfile.TarInfo(f"{piece.name}.{piece.start}")
            info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
            archive.addfile(info, io.BytesIO(body))
            yield sink.take()
    yield sink.take()


class _Sink:
    """A write-only file that keeps what was written until `take()`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data

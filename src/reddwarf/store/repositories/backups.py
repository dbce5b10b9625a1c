"""Backups and Trove's backup strategies (default containers).

A backup's status and progress are written by the reconciler that runs its operation (one at a time per
backup: the kernel's conflict rules), through `start`, `progress`, `complete`, `fail`; services write the row
(NEW) and, for a delete, `mark_deleting`. Deletion is soft: `mark_deleted` sets `deleted_at`, and the backup
disappears from `get` and `list`.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from reddwarf.domain.backup import Backup, BackupPhase, BackupStatus
from reddwarf.domain.errors import BadRequest
from reddwarf.domain.status import Fault
from reddwarf.store.clock import now
from reddwarf.store.tables import ArchivedLogRow, BackupRow, BackupStrategyRow

# Statuses of a backup that is still being taken.
RUNNING = (BackupStatus.NEW.value, BackupStatus.BUILDING.value)


class BackupRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, backup: Backup) -> None:
        timestamp = now()
        self._session.add(BackupRow(
            id=backup.id, project_id=backup.project_id, name=backup.name, description=backup.description,
            instance_id=backup.instance_id, parent_id=backup.parent_id, incremental=backup.incremental,
            datastore=backup.datastore, datastore_version=backup.datastore_version,
            datastore_version_id=backup.datastore_version_id, status=backup.status.value, strategy=backup.strategy,
            container=backup.container, location=backup.location, size_bytes=backup.size_bytes,
            raw_bytes=backup.raw_bytes, bytes_done=backup.bytes_done, phase=backup.phase.value,
            backup_metadata=dict(backup.metadata), manifest=dict(backup.manifest), fault_message=None,
            fault_details=None, fault_created=None, deleting=False, deleted_at=None,
            created=backup.created or timestamp, updated=backup.updated or timestamp,
            snapshot_id=backup.snapshot_id,
        ))
        self._session.flush()

    def get(self, backup_id: str, *, include_deleted: bool = False) -> Backup | None:
        row = self._session.get(BackupRow, backup_id)
        if row is None or (row.deleted_at is not None and not include_deleted):
            return None
        return _backup(row)

    def list(
        self, project_id: str | None, *, instance_id: str | None = None, datastore: str | None = None,
        limit: int | None = None, marker: str | None = None,
    ) -> builtins.list[Backup]:
        """Live backups of `project_id` (every project when None), oldest first by (created, id); `marker`
        is the id of the last backup of the previous page (an unknown one is a BadRequest)."""
        query = select(BackupRow).where(BackupRow.deleted_at.is_(None))
        if project_id is not None:
            query = query.where(BackupRow.project_id == project_id)
        if instance_id is not None:
            query = query.where(BackupRow.instance_id == instance_id)
        if datastore is not None:
            query = query.where(BackupRow.datastore == datastore)
        if marker is not None:
            anchor = self._session.get(BackupRow, marker)
            if anchor is None or (project_id is not None and anchor.project_id != project_id):
                raise BadRequest(f"Marker {marker} is not a known backup.", field="marker")
            query = query.where(_after(anchor.created, anchor.id))
        query = query.order_by(BackupRow.created, BackupRow.id)
        if limit is not None:
            query = query.limit(max(limit, 0))
        return [_backup(row) for row in self._session.scalars(query)]

    def count(self, project_id: str) -> int:
        query = select(func.count()).select_from(BackupRow).where(
            BackupRow.project_id == project_id, BackupRow.deleted_at.is_(None)
        )
        return int(self._session.scalar(query) or 0)

    def children(self, backup_id: str) -> builtins.list[Backup]:
        """The live backups whose parent is `backup_id`."""
        query = select(BackupRow).where(BackupRow.parent_id == backup_id, BackupRow.deleted_at.is_(None))
        return [_backup(row) for row in self._session.scalars(query.order_by(BackupRow.created, BackupRow.id))]

    def descendants(self, backup_id: str) -> builtins.list[Backup]:
        """Every live backup that has `backup_id` as an ancestor, deepest first (the order a delete removes
        them in)."""
        found: builtins.list[Backup] = []
        level = self.children(backup_id)
        while level:
            found.extend(level)
            level = [child for backup in level for child in self.children(backup.id)]
        return list(reversed(found))

    def chain(self, backup_id: str) -> builtins.list[Backup]:
        """`backup_id` and its ancestors, the full backup first (a restore applies them in this order). A
        missing ancestor ends the chain early: the caller checks that its first element is a full backup."""
        chain: builtins.list[Backup] = []
        seen: set[str] = set()
        current = self.get(backup_id)
        while current is not None and current.id not in seen:
            chain.append(current)
            seen.add(current.id)
            current = self.get(current.parent_id) if current.parent_id else None
        return list(reversed(chain))

    def latest_completed(self, instance_id: str) -> Backup | None:
        query = (
            select(BackupRow)
            .where(
                BackupRow.instance_id == instance_id, BackupRow.status == BackupStatus.COMPLETED.value,
                BackupRow.deleted_at.is_(None), BackupRow.deleting.is_(False),
                BackupRow.snapshot_id.is_(None),  # never an incremental's parent (`Backup.snapshot_id`)
            )
            .order_by(BackupRow.created.desc(), BackupRow.id.desc())
            .limit(1)
        )
        row = self._session.scalars(query).first()
        return None if row is None else _backup(row)

    def running_for(self, instance_id: str) -> Backup | None:
        """The backup of `instance_id` being taken, if any (NEW or BUILDING)."""
        query = select(BackupRow).where(
            BackupRow.instance_id == instance_id, BackupRow.status.in_(RUNNING), BackupRow.deleted_at.is_(None)
        )
        row = self._session.scalars(query.limit(1)).first()
        return None if row is None else _backup(row)

    def running_from_snapshot(self, snapshot_id: str) -> Backup | None:
        """The backup being streamed from `snapshot_id`, if any (NEW or BUILDING)."""
        query = select(BackupRow).where(
            BackupRow.snapshot_id == snapshot_id, BackupRow.status.in_(RUNNING), BackupRow.deleted_at.is_(None)
        )
        row = self._session.scalars(query.limit(1)).first()
        return None if row is None else _backup(row)

    def start(self, backup_id: str) -> None:
        self._update(backup_id, status=BackupStatus.BUILDING.value, phase=BackupPhase.PREPARING.value,
                     bytes_done=0, fault_message=None, fault_details=None, fault_created=None)

    def progress(self, backup_id: str, bytes_done: int, phase: BackupPhase) -> None:
        self._update(backup_id, bytes_done=bytes_done, phase=phase.value)

    def complete(
        self, backup_id: str, *, location: str, size_bytes: int, raw_bytes: int, metadata: dict[str, Any],
        manifest: dict[str, Any],
    ) -> None:
        self._update(
            backup_id, status=BackupStatus.COMPLETED.value, phase=BackupPhase.DONE.value, location=location,
            size_bytes=size_bytes, raw_bytes=raw_bytes, bytes_done=raw_bytes, backup_metadata=metadata,
            manifest=manifest,
        )

    def fail(self, backup_id: str, fault: Fault, status: BackupStatus = BackupStatus.FAILED) -> None:
        self._update(
            backup_id, status=status.value, fault_message=fault.message, fault_details=fault.details,
            fault_created=fault.created, deleting=False,
        )

    def record_verification(self, backup_id: str, *, verified: bool, verification: str) -> None:
        """What a verification found (`workflows.reconcilers.verify`); the backup itself is left as it is."""
        self._update(backup_id, verified=verified, verified_at=now(), verification=verification)

    def mark_deleting(self, backup_id: str) -> None:
        self._update(backup_id, deleting=True, phase=BackupPhase.DELETING.value)

    def mark_deleted(self, backup_id: str) -> None:
        timestamp = now()
        self._session.execute(
            update(BackupRow).where(BackupRow.id == backup_id).values(deleted_at=timestamp, updated=timestamp)
        )

    def _update(self, backup_id: str, **values: Any) -> None:
        values["updated"] = now()
        self._session.execute(update(BackupRow).where(BackupRow.id == backup_id).values(**values))

    # -- strategies -------------------------------------------------------------------------------

    def strategies(self, project_id: str, instance_id: str | None = None) -> builtins.list[tuple[str, str, str, str]]:
        """(project_id, instance_id or "", backend, container) of `project_id`, optionally one instance's."""
        query = select(BackupStrategyRow).where(BackupStrategyRow.project_id == project_id)
        if instance_id is not None:
            query = query.where(BackupStrategyRow.instance_id == instance_id)
        rows = self._session.scalars(query.order_by(BackupStrategyRow.instance_id))
        return [(row.project_id, row.instance_id, row.backend, row.container) for row in rows]

    def put_strategy(self, project_id: str, instance_id: str, backend: str, container: str) -> None:
        row = self._session.get(BackupStrategyRow, (project_id, instance_id))
        if row is None:
            self._session.add(BackupStrategyRow(
                project_id=project_id, instance_id=instance_id, backend=backend, container=container, created=now()
            ))
        else:
            row.backend, row.container = backend, container
        self._session.flush()

    def delete_strategy(self, project_id: str, instance_id: str) -> bool:
        row = self._session.get(BackupStrategyRow, (project_id, instance_id))
        if row is None:
            return False
        self._session.delete(row)
        return True

    def container_for(self, project_id: str, instance_id: str) -> str | None:
        """The default container of `instance_id`, else of its project, else None."""
        for key in (instance_id, ""):
            row = self._session.get(BackupStrategyRow, (project_id, key))
            if row is not None:
                return row.container
        return None


class ArchivedLogRepository:
    """Log files (WAL segments) shipped from instances to backup storage, by instance and name."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def record(self, instance_id: str, name: str, key: str, size_bytes: int, manifest: dict[str, Any]) -> None:
        """Record (or re-record, after a re-ship) one shipped file."""
        row = self._session.get(ArchivedLogRow, (instance_id, name))
        if row is None:
            self._session.add(ArchivedLogRow(
                instance_id=instance_id, name=name, key=key, size_bytes=size_bytes, manifest=manifest,
                shipped_at=now(),
            ))
        else:
            row.key, row.size_bytes, row.manifest, row.shipped_at = key, size_bytes, manifest, now()
        self._session.flush()

    def forget(self, instance_id: str) -> None:
        """The instance is gone, and its shipped archive with it."""
        self._session.execute(delete(ArchivedLogRow).where(ArchivedLogRow.instance_id == instance_id))

    def names(self, instance_id: str) -> builtins.list[str]:
        query = select(ArchivedLogRow.name).where(ArchivedLogRow.instance_id == instance_id)
        return sorted(self._session.scalars(query))

    def get(self, instance_id: str, name: str) -> tuple[str, dict[str, Any]] | None:
        """(storage key, manifest) of one shipped file."""
        row = self._session.get(ArchivedLogRow, (instance_id, name))
        return None if row is None else (row.key, dict(row.manifest))


def _after(created: float, backup_id: str) -> ColumnElement[bool]:
    return or_(BackupRow.created > created, and_(BackupRow.created == created, BackupRow.id > backup_id))


def _backup(row: BackupRow) -> Backup:
    fault = None
    if row.fault_message is not None:
        fault = Fault(message=row.fault_message, details=row.fault_details or "", created=row.fault_created or 0.0)
    return Backup(
        id=row.id, project_id=row.project_id, name=row.name, description=row.description,
        instance_id=row.instance_id, datastore=row.datastore, datastore_version=row.datastore_version,
        datastore_version_id=row.datastore_version_id, status=BackupStatus(row.status), strategy=row.strategy,
        container=row.container, location=row.location, parent_id=row.parent_id, incremental=row.incremental,
        size_bytes=row.size_bytes, raw_bytes=row.raw_bytes, bytes_done=row.bytes_done,
        phase=BackupPhase(row.phase), metadata=dict(row.backup_metadata), manifest=dict(row.manifest),
        fault=fault, created=row.created, updated=row.updated, deleting=row.deleting, verified=row.verified,
        verified_at=row.verified_at, verification=row.verification, snapshot_id=row.snapshot_id,
    )

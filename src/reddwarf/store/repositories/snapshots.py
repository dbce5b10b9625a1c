"""Snapshots of instance volumes. Services write the row (NEW) and, for a delete, `mark_deleting`; the
reconciler of its operation writes `complete` or `fail`, and `mark_deleted` once the image is gone (soft:
the snapshot disappears from `get` and `list`)."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from reddwarf.domain.errors import BadRequest
from reddwarf.domain.snapshot import Snapshot, SnapshotStatus
from reddwarf.domain.status import Fault
from reddwarf.store.clock import now
from reddwarf.store.tables import SnapshotRow


class SnapshotRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, snapshot: Snapshot) -> None:
        timestamp = now()
        self._session.add(SnapshotRow(
            id=snapshot.id, project_id=snapshot.project_id, name=snapshot.name, description=snapshot.description,
            instance_id=snapshot.instance_id, datastore=snapshot.datastore,
            datastore_version=snapshot.datastore_version, volume_size_gb=snapshot.volume_size_gb,
            status=snapshot.status.value, fault_message=None, fault_details=None, fault_created=None,
            deleting=False, deleted_at=None, created=snapshot.created or timestamp,
            updated=snapshot.updated or timestamp,
        ))
        self._session.flush()

    def get(self, snapshot_id: str) -> Snapshot | None:
        row = self._session.get(SnapshotRow, snapshot_id)
        return None if row is None or row.deleted_at is not None else _snapshot(row)

    def list(
        self, project_id: str, *, instance_id: str | None = None, limit: int | None = None,
        marker: str | None = None,
    ) -> builtins.list[Snapshot]:
        """Live snapshots of the project (of one instance), oldest first; `marker`: the last id of the page
        before (an unknown one is a BadRequest)."""
        query = select(SnapshotRow).where(SnapshotRow.deleted_at.is_(None), SnapshotRow.project_id == project_id)
        if instance_id is not None:
            query = query.where(SnapshotRow.instance_id == instance_id)
        if marker is not None:
            anchor = self._session.get(SnapshotRow, marker)
            if anchor is None or anchor.project_id != project_id:
                raise BadRequest(f"Marker {marker} is not a known snapshot.", field="marker")
            query = query.where(or_(SnapshotRow.created > anchor.created,
                                    and_(SnapshotRow.created == anchor.created, SnapshotRow.id > anchor.id)))
        query = query.order_by(SnapshotRow.created, SnapshotRow.id)
        if limit is not None:
            query = query.limit(max(limit, 0))
        return [_snapshot(row) for row in self._session.scalars(query)]

    def complete(self, snapshot_id: str) -> None:
        self._update(snapshot_id, status=SnapshotStatus.COMPLETED.value)

    def fail(self, snapshot_id: str, fault: Fault, status: SnapshotStatus = SnapshotStatus.FAILED) -> None:
        self._update(snapshot_id, status=status.value, fault_message=fault.message, fault_details=fault.details,
                     fault_created=fault.created, deleting=False)

    def mark_deleting(self, snapshot_id: str) -> None:
        self._update(snapshot_id, deleting=True)

    def mark_deleted(self, snapshot_id: str) -> None:
        timestamp = now()
        self._session.execute(
            update(SnapshotRow).where(SnapshotRow.id == snapshot_id).values(deleted_at=timestamp, updated=timestamp)
        )

    def _update(self, snapshot_id: str, **values: Any) -> None:
        values["updated"] = now()
        self._session.execute(update(SnapshotRow).where(SnapshotRow.id == snapshot_id).values(**values))


def _snapshot(row: SnapshotRow) -> Snapshot:
    fault = None
    if row.fault_message is not None:
        fault = Fault(message=row.fault_message, details=row.fault_details or "", created=row.fault_created or 0.0)
    return Snapshot(
        id=row.id, project_id=row.project_id, name=row.name, description=row.description,
        instance_id=row.instance_id, datastore=row.datastore, datastore_version=row.datastore_version,
        volume_size_gb=row.volume_size_gb, status=SnapshotStatus(row.status), fault=fault, deleting=row.deleting,
        created=row.created, updated=row.updated,
    )

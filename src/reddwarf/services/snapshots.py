"""Snapshots of running instances (`POST /instances/{id}/snapshots` and `/snapshots`, Reddwarf's extension;
docs/branches.md): taken in a fraction of a second on the host's copy-on-write pool, listed, shown, deleted,
and branched from (`restorePoint: {"snapshotRef": ...}`).

A snapshot is refused before anything is written when the instance is not the caller's (404), not ACTIVE or
already being snapped or backed up (422), its name is empty or too long (400), or the deployment cannot
take snapshots (400, naming why). Each snapshot reserves its instance's volume size against the host's
storage (the blocks it shares become its own as the instance rewrites them): a full host refuses it (507).
"""

from __future__ import annotations

import logging
import unicodedata
import uuid

from reddwarf.domain.backup import NAME_MAX, SOURCE_ADMIN_SECRET, Backup
from reddwarf.domain.errors import BadRequest, NotFound, UnprocessableEntity
from reddwarf.domain.instance import Instance
from reddwarf.domain.operations import Kind, SnapshotCreate
from reddwarf.domain.secret import ADMIN_SECRET
from reddwarf.domain.snapshot import Snapshot, SnapshotStatus
from reddwarf.domain.status import InstanceStatus
from reddwarf.identity.context import AuthContext
from reddwarf.services import capacity
from reddwarf.services.context import ServiceContext
from reddwarf.services.lookup import load_instance
from reddwarf.store.uow import UnitOfWork

logger = logging.getLogger(__name__)


def create(ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str | None,
           description: str | None = None) -> Snapshot:
    """Record the snapshot (NEW) and a "snapshot.create" on the instance, in one unit of work."""
    name = _validate_name(name)
    if description is not None and len(description) > 4096:
        raise BadRequest("The snapshot description is longer than 4096 characters.", field="description")
    if ctx.branch_refusal is not None:
        raise BadRequest(f"snapshot: this deployment cannot take snapshots: {ctx.branch_refusal}.",
                         field="snapshot")
    limit = storage_limit(ctx)
    with ctx.db.unit_of_work() as uow:
        instance = load_instance(uow, auth, instance_id)
        snapshot = record(ctx, uow, instance, name, description, limit)
    logger.info("snapshot %s of instance %s requested", snapshot.id, instance.id)
    return snapshot


def storage_limit(ctx: ServiceContext) -> int | None:
    """What every volume reservation together may hold (read before a unit of work: the first read may set
    up the runtime's volume pool)."""
    return capacity.limit(
        None if ctx.storage_capacity is None else ctx.storage_capacity(), ctx.settings.storage_overcommit_ratio
    )


def record(ctx: ServiceContext, uow: UnitOfWork, instance: Instance, name: str, description: str | None,
           storage_limit: int | None) -> Snapshot:
    """Write a snapshot of `instance` (NEW), its storage reservation, the source's credential and its
    "snapshot.create" in `uow` (422 unless the instance is ACTIVE; 507 when the host's storage is full)."""
    if instance.deleting or instance.status is not InstanceStatus.ACTIVE:
        state = "DELETING" if instance.deleting else instance.status.value
        raise UnprocessableEntity(
            f"Instance {instance.id} is not ready for a snapshot (status {state}); it must be ACTIVE."
        )
    admin = uow.secrets.get(instance.id, ADMIN_SECRET)
    if admin is None:
        raise UnprocessableEntity(f"Instance {instance.id} cannot be snapshotted: its credential is missing.")
    now = ctx.clock()
    spec = instance.spec
    snapshot = Snapshot(
        id=str(uuid.uuid4()), project_id=instance.project_id, name=name, description=description,
        instance_id=instance.id, datastore=spec.datastore, datastore_version=spec.datastore_version,
        volume_size_gb=spec.volume_size_gb, created=now, updated=now,
    )
    capacity.reserve_volume(uow, snapshot.id, "snapshot", spec.volume_size_gb, storage_limit)
    uow.snapshots.add(snapshot)
    # A branch of the snapshot knows this password until it is adopted; the instance may be gone by then.
    uow.secrets.put(snapshot.id, SOURCE_ADMIN_SECRET, admin)
    ctx.enqueue(uow, Kind.SNAPSHOT_CREATE, instance.id, SnapshotCreate(snapshot_id=snapshot.id).model_dump())
    uow.events.add(instance.id, "snapshot", f"snapshot {snapshot.id} requested")
    return snapshot


def get(ctx: ServiceContext, auth: AuthContext, snapshot_id: str) -> Snapshot:
    with ctx.db.unit_of_work(write=False) as uow:
        snapshot = uow.snapshots.get(snapshot_id) if snapshot_id else None
    if snapshot is None or snapshot.project_id != auth.project_id:
        raise NotFound("Snapshot", snapshot_id[:64])
    return snapshot


def list_snapshots(ctx: ServiceContext, auth: AuthContext, instance_id: str | None = None, *,
                   limit: int | None = None, marker: str | None = None) -> list[Snapshot]:
    if limit is not None and limit < 1:
        raise BadRequest("limit must be a positive integer.", field="limit")
    page = min(limit, ctx.page_size) if limit is not None else ctx.page_size
    with ctx.db.unit_of_work(write=False) as uow:
        if instance_id is not None:
            load_instance(uow, auth, instance_id)
        return uow.snapshots.list(auth.project_id, instance_id=instance_id, limit=page, marker=marker)


def delete(ctx: ServiceContext, auth: AuthContext, snapshot_id: str) -> None:
    """Mark it deleting and enqueue "snapshot.delete" on it (idempotent while that runs); a snapshot still
    being taken answers 422. Branches made from it are independent of it."""
    with ctx.db.unit_of_work() as uow:
        snapshot = uow.snapshots.get(snapshot_id) if snapshot_id else None
        if snapshot is None or snapshot.project_id != auth.project_id:
            raise NotFound("Snapshot", snapshot_id[:64])
        if snapshot.status is SnapshotStatus.NEW:
            raise UnprocessableEntity(f"Snapshot {snapshot.id} is still being taken; delete it when it ends.")
        streaming = uow.backups.running_from_snapshot(snapshot.id)
        if streaming is not None:
            raise UnprocessableEntity(f"Snapshot {snapshot.id} is being streamed into backup {streaming.id}; "
                                      "delete it when the backup ends.")
        if snapshot.deleting and uow.operations.active_for(snapshot.id):
            return
        uow.snapshots.mark_deleting(snapshot.id)
        ctx.enqueue(uow, Kind.SNAPSHOT_DELETE, snapshot.id)


def branch_snapshot(ctx: ServiceContext, auth: AuthContext, snapshot_id: str) -> Snapshot:
    """The snapshot a create branches (404 unknown or another project's; 422 not COMPLETED; 400 when this
    deployment cannot branch)."""
    if ctx.branch_refusal is not None:
        raise BadRequest(f"restorePoint.snapshotRef: this deployment cannot branch instances: "
                         f"{ctx.branch_refusal}.", field="restorePoint.snapshotRef")
    snapshot = get(ctx, auth, snapshot_id)
    if snapshot.status is not SnapshotStatus.COMPLETED or snapshot.deleting:
        state = "being deleted" if snapshot.deleting else f"status {snapshot.status.value}"
        raise UnprocessableEntity(f"Snapshot {snapshot.id} cannot be branched ({state}); it must be COMPLETED.")
    return snapshot


def _validate_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise BadRequest("The snapshot name is required and must not be empty.", field="name")
    if len(name) > NAME_MAX:
        raise BadRequest(f"The snapshot name is {len(name)} characters long; the maximum is {NAME_MAX}.",
                         field="name")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadRequest("The snapshot name must not contain control characters.", field="name")
    return name


def kept_for_restore(ctx: ServiceContext, backup: Backup, datastore_version: str, volume_gb: int) -> Snapshot | None:
    """The snapshot a backup was streamed from, if a restore of it on this host can branch from it instead
    of streaming the backup back: still kept (COMPLETED), of the version restored, no larger than the
    volume asked for, on a deployment that branches by copy-on-write."""
    if backup.snapshot_id is None or ctx.branch_refusal is not None:
        return None
    with ctx.db.unit_of_work(write=False) as uow:
        snapshot = uow.snapshots.get(backup.snapshot_id)
    usable = (
        snapshot is not None and snapshot.status is SnapshotStatus.COMPLETED and not snapshot.deleting
        and snapshot.project_id == backup.project_id and snapshot.datastore_version == datastore_version
        and snapshot.volume_size_gb <= volume_gb
    )
    return snapshot if usable else None

"""Backup use cases: create, list, show, delete; Trove's backup strategies (default containers); and the
checks a restore (`POST /instances` with `restorePoint`) makes before anything is built.

Scope as everywhere: a caller sees its own project's backups (another project's id answers 404); admins
reach any by id and list every project's with `all_projects`. A backup outlives its instance.

Create checks, in order, and writes nothing when one fails: `restore_from` (importing a backup from another
deployment) is refused (400); the name (400); the instance (404) and its engine's backup capability (400);
the parent (404 unknown or another project's, 400 another instance's, 422 not completed); an incremental the
engine cannot take now (400 with its reason: Redis has none, a PostgreSQL instance created before WAL
summaries were on must restart first); the instance is ACTIVE and no backup of it runs (422, as Trove).
Then ONE unit of work records the backup (NEW) and a "backup.create" operation; the reconciler writes every
later status (BUILDING, COMPLETED, FAILED) and the instance's BACKUP status while it runs.

Trove's `storage_driver` ("swift", "cinder") and `swift_container` are accepted: the backup goes to the
operator's configured storage, and the container is a prefix there (default: the instance's or project's
backup strategy, else `database_backups`).
"""

from __future__ import annotations

import logging
import math
import unicodedata
import uuid
from dataclasses import dataclass

from reddwarf.domain.backup import DEFAULT_CONTAINER, NAME_MAX, SOURCE_ADMIN_SECRET, Backup, BackupStatus
from reddwarf.domain.capabilities import Capability
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import BadRequest, NotFound, UnprocessableEntity
from reddwarf.domain.instance import Instance
from reddwarf.domain.operations import BackupCreate, Kind
from reddwarf.domain.status import InstanceStatus
from reddwarf.engines.base import Engine
from reddwarf.identity.context import AuthContext
from reddwarf.services import live, snapshots
from reddwarf.services.context import ServiceContext
from reddwarf.services.lookup import is_instance_id, load_instance
from reddwarf.store.uow import UnitOfWork

logger = logging.getLogger(__name__)

STORAGE_DRIVERS = ("swift", "cinder")
CONTAINER_MAX = 255
GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class CreateBackupRequest:
    name: str | None
    instance_id: str | None
    description: str | None = None
    parent_id: str | None = None
    incremental: bool = False
    swift_container: str | None = None
    storage_driver: str | None = None
    restore_from: bool = False
    # Reddwarf's extension: take a snapshot, then stream the backup from it in the background.
    from_snapshot: bool = False


@dataclass(frozen=True, slots=True)
class BackupPage:
    items: tuple[Backup, ...]
    next_marker: str | None


@dataclass(frozen=True, slots=True)
class Strategy:
    project_id: str
    instance_id: str
    backend: str
    container: str


def load_backup(uow: UnitOfWork, auth: AuthContext, backup_id: str) -> Backup:
    """The backup, or `NotFound` -- also another project's, unless the caller is an admin."""
    backup = uow.backups.get(backup_id) if is_instance_id(backup_id) else None
    if backup is None or (not auth.is_admin and backup.project_id != auth.project_id):
        raise NotFound("Backup", backup_id.encode("unicode_escape").decode("ascii")[:64])
    return backup


def create(ctx: ServiceContext, auth: AuthContext, request: CreateBackupRequest) -> Backup:
    if request.restore_from:
        raise BadRequest(
            "restore_from is not supported: Reddwarf does not import backups taken by another deployment.",
            field="restore_from",
        )
    name = _validate_name(request.name)
    if request.storage_driver is not None and request.storage_driver not in STORAGE_DRIVERS:
        raise BadRequest(
            f"storage_driver must be one of {', '.join(STORAGE_DRIVERS)}, not {request.storage_driver!r}.",
            field="storage_driver",
        )
    if request.swift_container is not None:
        _validate_container(request.swift_container, "swift_container")
    if not request.instance_id:
        raise BadRequest("instance is required: the id of the instance to back up.", field="instance")
    with ctx.db.unit_of_work(write=False) as uow:
        instance = load_instance(uow, auth, request.instance_id)
        parent = _parent(uow, auth, instance, request)
    engine, version = _engine_version(ctx, instance)
    if not engine.capabilities(version).has(Capability.BACKUP):
        raise BadRequest(
            f"Backups are not supported by datastore {version.datastore} version {version.name}.", field="instance"
        )
    strategies = engine.backups(version).strategies()
    field = "parent_id" if request.parent_id is not None else "incremental"
    if (request.incremental or request.parent_id is not None) and strategies.incremental is None:
        # Never a full copy called incremental.
        raise BadRequest(
            f"Incremental backups are not supported by {version.datastore} {version.name}: {strategies.reason}",
            field=field,
        )
    if request.from_snapshot:
        _check_from_snapshot(ctx, request)
    _require_active(instance)
    if parent is not None:
        with live.reach(ctx, instance) as (placement, admin):
            blocker = engine.backups(version).incremental_blocker(placement, admin)
        if blocker is not None:
            raise BadRequest(f"An incremental backup of instance {instance.id} cannot be taken: {blocker}", field=field)
    limit = snapshots.storage_limit(ctx) if request.from_snapshot else None
    with ctx.db.unit_of_work() as uow:
        snapshot = None
        if request.from_snapshot:
            snapshot = snapshots.record(ctx, uow, instance, f"backup {name}"[:NAME_MAX],
                                        "Taken for a backup streamed from it; deleting it does not touch the backup.",
                                        limit)
        backup = record(ctx, uow, instance, str(uuid.uuid4()), name, request.description, parent,
                        swift_container=request.swift_container, snapshot_id=None if snapshot is None else snapshot.id)
        if snapshot is not None:  # what a restore logs in with once: the backup's own, whatever becomes of it
            source_admin = uow.secrets.get(snapshot.id, SOURCE_ADMIN_SECRET)
            if source_admin is not None:
                uow.secrets.put(backup.id, SOURCE_ADMIN_SECRET, source_admin)
    logger.info("backup %s of instance %s requested (%s)", backup.id, instance.id, backup.strategy)
    return backup


def record(
    ctx: ServiceContext, uow: UnitOfWork, instance: Instance, backup_id: str, name: str, description: str | None,
    parent: Backup | None, *, swift_container: str | None = None, snapshot_id: str | None = None,
) -> Backup:
    """Write a backup of `instance` (status NEW) and its "backup.create" operation in `uow` (with
    `snapshot_id`, the snapshot recorded in the same `uow`: "backup.from_snapshot" on the backup); the
    instance is checked again there (ACTIVE, no other backup running: two requests at once get one)."""
    engine, version = _engine_version(ctx, instance)
    if not engine.capabilities(version).has(Capability.BACKUP):
        raise BadRequest(
            f"Backups are not supported by datastore {version.datastore} version {version.name}.", field="instance"
        )
    strategies = engine.backups(version).strategies()
    current = uow.instances.get(instance.id)
    if current is None:
        raise NotFound("Instance", instance.id)
    _require_active(current)
    running = uow.backups.running_for(instance.id)
    if running is not None:
        raise UnprocessableEntity(
            f"Instance {instance.id} is already being backed up (backup {running.id}); one backup at a time."
        )
    container = swift_container or uow.backups.container_for(instance.project_id, instance.id)
    now = ctx.clock()
    backup = Backup(
        id=backup_id, project_id=instance.project_id, name=name, description=description,
        instance_id=instance.id, datastore=version.datastore, datastore_version=version.name,
        datastore_version_id=version.id, status=BackupStatus.NEW,
        strategy=strategies.incremental if parent is not None and strategies.incremental else strategies.full,
        container=container or DEFAULT_CONTAINER, parent_id=None if parent is None else parent.id,
        incremental=parent is not None, created=now, updated=now, snapshot_id=snapshot_id,
    )
    uow.backups.add(backup)
    if snapshot_id is not None:
        ctx.enqueue(uow, Kind.BACKUP_FROM_SNAPSHOT, backup_id)
    else:
        ctx.enqueue(uow, Kind.BACKUP_CREATE, instance.id, BackupCreate(backup_id=backup_id).model_dump(mode="json"))
    uow.events.add(instance.id, "backup", f"backup {backup_id} requested")
    return backup


def _check_from_snapshot(ctx: ServiceContext, request: CreateBackupRequest) -> None:
    """A backup from a snapshot is a full one, on a deployment that takes snapshots (400 otherwise)."""
    if request.incremental or request.parent_id is not None:
        raise BadRequest(
            "from_snapshot: a backup streamed from a snapshot is a full backup; an incremental is streamed from "
            "the instance (its parent must be in the instance's own history).", field="from_snapshot",
        )
    if ctx.branch_refusal is not None:
        raise BadRequest(f"from_snapshot: this deployment cannot take snapshots: {ctx.branch_refusal}.",
                         field="from_snapshot")


def _parent(uow: UnitOfWork, auth: AuthContext, instance: Instance, request: CreateBackupRequest) -> Backup | None:
    """The explicit parent (404 / 400 / 422), else with `incremental` the instance's latest completed backup
    (none: a full backup, as Trove)."""
    if request.parent_id is not None:
        try:
            parent = load_backup(uow, auth, request.parent_id)
        except NotFound:
            raise NotFound("Backup", request.parent_id[:64]) from None
        if parent.instance_id != instance.id:
            raise BadRequest(
                f"Backup {parent.id} is a backup of another instance; an incremental's parent must be a backup "
                f"of instance {instance.id}.", field="parent_id",
            )
        if parent.snapshot_id is not None:
            raise BadRequest(
                f"parent_id: backup {parent.id} was streamed from a snapshot and cannot be an incremental's "
                "parent: the server it was taken from left the instance's history there. Name a backup streamed "
                "from the instance, or take a full one.", field="parent_id",
            )
        if parent.status is not BackupStatus.COMPLETED or parent.deleting:
            raise UnprocessableEntity(f"Backup {parent.id} is not completed (status {parent.status.value}).")
        return parent
    if request.incremental:
        return uow.backups.latest_completed(instance.id)
    return None


def _require_active(instance: Instance) -> None:
    if instance.deleting or instance.status is not InstanceStatus.ACTIVE:
        state = "DELETING" if instance.deleting else instance.status.value
        raise UnprocessableEntity(
            f"Instance {instance.id} is not ready for a backup (status {state}); it must be ACTIVE."
        )


def _engine_version(ctx: ServiceContext, instance: Instance) -> tuple[Engine, DatastoreVersion]:
    spec = instance.spec
    engine = ctx.engines.get(spec.datastore)
    version = None if engine is None else next((v for v in engine.versions() if v.name == spec.datastore_version), None)
    if engine is None or version is None:
        raise UnprocessableEntity(
            f"Datastore {spec.datastore} version {spec.datastore_version} is not installed on this server."
        )
    return engine, version


def _validate_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise BadRequest("The backup name is required and must not be empty.", field="name")
    if len(name) > NAME_MAX:
        raise BadRequest(f"The backup name is {len(name)} characters long; the maximum is {NAME_MAX}.", field="name")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadRequest("The backup name must not contain control characters.", field="name")
    return name


def _validate_container(container: str, field: str) -> str:
    """A container becomes a storage prefix: one path segment of letters, digits, '-', '_' and '.'."""
    if not container or len(container) > CONTAINER_MAX:
        raise BadRequest(f"{field} must be 1 to {CONTAINER_MAX} characters long.", field=field)
    if container in (".", "..") or not all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in container):
        raise BadRequest(
            f"{field} {container!r} may contain only letters, digits, '-', '_' and '.'.", field=field
        )
    return container


def get(ctx: ServiceContext, auth: AuthContext, backup_id: str) -> Backup:
    with ctx.db.unit_of_work(write=False) as uow:
        return load_backup(uow, auth, backup_id)


def list_backups(
    ctx: ServiceContext, auth: AuthContext, *, instance_id: str | None = None, datastore: str | None = None,
    all_projects: bool = False, limit: int | None = None, marker: str | None = None,
) -> BackupPage:
    """The caller's project's backups (every project's for an admin with `all_projects`), oldest first."""
    if limit is not None and limit < 1:
        raise BadRequest("limit must be a positive integer.", field="limit")
    page_size = min(limit, ctx.page_size) if limit is not None else ctx.page_size
    project = None if (all_projects and auth.is_admin) else auth.project_id
    with ctx.db.unit_of_work(write=False) as uow:
        if instance_id is not None:
            load_instance(uow, auth, instance_id, include_deleted=True)
        if marker is not None and (not is_instance_id(marker) or uow.backups.get(marker, include_deleted=True) is None):
            raise BadRequest(f"The marker {marker[:64]} does not name a backup.", field="marker")
        rows = uow.backups.list(project, instance_id=instance_id, datastore=datastore, limit=page_size + 1,
                                marker=marker)
    items = tuple(rows[:page_size])
    return BackupPage(items=items, next_marker=items[-1].id if len(rows) > page_size and items else None)


def delete(ctx: ServiceContext, auth: AuthContext, backup_id: str) -> None:
    """Mark the backup and its incremental descendants deleting and enqueue ONE "backup.delete" on the backup,
    which removes the descendants first (deepest first), then the backup, as Trove. A backup (or a
    descendant) still being taken answers 422. Idempotent while the delete runs."""
    with ctx.db.unit_of_work() as uow:
        backup = load_backup(uow, auth, backup_id)
        family = [*uow.backups.descendants(backup.id), backup]
        running = next((b for b in family if b.status in (BackupStatus.NEW, BackupStatus.BUILDING)), None)
        if running is not None:
            raise UnprocessableEntity(
                f"Backup {running.id} is still being taken (status {running.status.value}); delete it when it ends."
            )
        if backup.deleting and uow.operations.active_for(backup.id):
            return
        for member in family:
            uow.backups.mark_deleting(member.id)
        ctx.enqueue(uow, Kind.BACKUP_DELETE, backup.id)
    logger.info("backup %s delete requested (%d incremental descendant(s))", backup_id, len(family) - 1)


# -- restores -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestoreSource:
    """What a create from a backup needs: the backup (the newest of its chain) and the chain's raw size."""

    backup: Backup
    raw_bytes: int


def restore_source(ctx: ServiceContext, auth: AuthContext, backup_id: str) -> RestoreSource:
    """The completed backup a create restores (404 unknown or another project's; 422 not completed; 422 a
    chain with a missing or unfinished link)."""
    with ctx.db.unit_of_work(write=False) as uow:
        try:
            backup = load_backup(uow, auth, backup_id)
        except NotFound:
            raise NotFound("Backup", backup_id[:64]) from None
        chain = uow.backups.chain(backup.id)
    if backup.status is not BackupStatus.COMPLETED or backup.deleting:
        state = "being deleted" if backup.deleting else f"status {backup.status.value}"
        raise UnprocessableEntity(f"Backup {backup.id} cannot be restored ({state}); it must be COMPLETED.")
    broken = chain[0].incremental or any(
        link.status is not BackupStatus.COMPLETED or link.deleting for link in chain
    )
    if broken:
        raise UnprocessableEntity(f"Backup {backup.id} cannot be restored: a backup of its chain is missing.")
    return RestoreSource(backup=backup, raw_bytes=sum(link.raw_bytes or 0 for link in chain))


def check_restore_volume(source: RestoreSource, volume_gb: int) -> None:
    """A volume too small for the chain's uncompressed size is refused before anything is built."""
    if volume_gb * GIB < source.raw_bytes:
        needed = max(1, math.ceil(source.raw_bytes / GIB))
        raise BadRequest(
            f"volume.size {volume_gb} GB is too small for backup {source.backup.id}, whose data takes "
            f"{source.raw_bytes / GIB:.2f} GB uncompressed; ask for at least {needed} GB.", field="volume.size",
        )


# -- backup strategies (Trove's default containers) ---------------------------------------------------------


def list_strategies(
    ctx: ServiceContext, auth: AuthContext, *, instance_id: str | None = None, project_id: str | None = None
) -> list[Strategy]:
    project = _strategy_project(auth, project_id)
    with ctx.db.unit_of_work(write=False) as uow:
        rows = uow.backups.strategies(project, instance_id)
    return [Strategy(*row) for row in rows]


def put_strategy(
    ctx: ServiceContext, auth: AuthContext, *, container: str, instance_id: str | None = None
) -> Strategy:
    """A default container for the caller's project, or for one of its instances (Trove's POST)."""
    _validate_container(container, "swift_container")
    with ctx.db.unit_of_work() as uow:
        if instance_id is not None:
            load_instance(uow, auth, instance_id)
        uow.backups.put_strategy(auth.project_id, instance_id or "", "swift", container)
    return Strategy(auth.project_id, instance_id or "", "swift", container)


def delete_strategy(
    ctx: ServiceContext, auth: AuthContext, *, instance_id: str | None = None, project_id: str | None = None
) -> None:
    project = _strategy_project(auth, project_id)
    with ctx.db.unit_of_work() as uow:
        if not uow.backups.delete_strategy(project, instance_id or ""):
            raise NotFound("Backup strategy", f"{project}/{instance_id or ''}")


def _strategy_project(auth: AuthContext, project_id: str | None) -> str:
    if project_id is not None and project_id != auth.project_id and not auth.is_admin:
        raise NotFound("Backup strategy", project_id[:64])
    return project_id or auth.project_id

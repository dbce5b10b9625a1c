"""Branching a running instance into a new one (the `branch` step of a create with `branch_source_id`,
instead of `prepare` and `initialise`): docs/branches.md.

The source's engine quiesces it (PostgreSQL a CHECKPOINT, MariaDB its backup stages), the runtime snapshots
its volume under a freeze of a fraction of a second, and the new instance is prepared on a copy-on-write
copy of that snapshot, its files given to its own OS user and the engine's fix-ups run; the snapshot is
then removed (the copy shares its blocks, not its file). The source's admin password, which the copy's
server knows until the create's `adopt` rotates it, is kept as the new instance's secret
`SOURCE_ADMIN_SECRET`: the source may be deleted meanwhile. The snapshot's id is derived from the new
instance's, so a re-run after a crash finds what the first run made (every call here is idempotent).
"""

from __future__ import annotations

import dataclasses
import logging

from reddwarf.domain.backup import SOURCE_ADMIN_SECRET
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import Instance
from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.domain.snapshot import SnapshotStatus
from reddwarf.domain.workload import CommandSpec, Placement
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps

log = logging.getLogger(__name__)


def snapshot_id_of(instance_id: str) -> str:
    return f"branch-{instance_id}"


def branch_volume(deps: ReconcilerDeps, instance: Instance, placement: Placement) -> None:
    """Snapshot the source, branch the new instance from it, remove the snapshot (or branch from the kept
    snapshot the create names); nothing once initialised."""
    if deps.runtime.initialised(placement):
        return
    if instance.spec.branch_snapshot_id is not None:
        _from_snapshot(deps, instance, placement, instance.spec.branch_snapshot_id)
        return
    source_id = instance.spec.branch_source_id
    if source_id is None:
        raise PermanentError(f"Instance {instance.id} is not a branch.")
    with deps.db.unit_of_work(write=False) as uow:
        found = uow.instances.get_with_secrets(source_id)
    if found is None or found[0].deleting or found[0].endpoint is None:
        raise PermanentError(f"Instance {source_id} cannot be branched: it no longer exists.")
    source, owned = found
    source_admin = owned.get(ADMIN_SECRET)
    if source_admin is None:
        raise PermanentError(f"Instance {source_id} cannot be branched: its admin credential is missing.")
    with deps.db.unit_of_work() as uow:
        uow.secrets.put(instance.id, SOURCE_ADMIN_SECRET, source_admin)
    fix_ups = deps.engine(instance).snapshots(deps.version_for(instance.spec)).fix_ups(placement)
    copy_volume(deps, instance, placement, source, source_admin, fix_ups)
    with deps.db.unit_of_work() as uow:
        uow.events.add(instance.id, "branched", f"branched from instance {source_id}")
    log.info("instance %s: branched from instance %s", instance.id, source_id)


def copy_volume(
    deps: ReconcilerDeps, instance: Instance, placement: Placement, source: Instance, source_admin: Secret,
    init: tuple[CommandSpec, ...],
) -> None:
    """Snapshot the running `source` (quiesced by its engine), prepare `instance` on a copy-on-write copy of it
    with `init` run as its OS user, and remove the snapshot. Idempotent (the snapshot's id is derived from the
    new instance's)."""
    there = deps.placement(source)
    snapshots = deps.engine(source).snapshots(deps.version_for(source.spec))
    snapshot_id = snapshot_id_of(instance.id)
    with snapshots.quiesced(there, source_admin):
        deps.runtime.snapshot(there, snapshot_id, snapshots.carried())
    fixed = dataclasses.replace(deps.workload(instance, placement), init=init, init_files=())
    try:
        deps.runtime.branch(placement, deps.resources(instance), snapshot_id, fixed)
    except PermanentError:
        # The snapshot is this copy's own and in no record: nothing else would ever remove it (and its
        # blocks, unshared as the source writes on, would fill the pool unreserved).
        deps.runtime.remove_snapshot(snapshot_id)
        raise
    deps.runtime.remove_snapshot(snapshot_id)


def _from_snapshot(deps: ReconcilerDeps, instance: Instance, placement: Placement, snapshot_id: str) -> None:
    """Branch from a kept snapshot (its source may be gone): the snapshot stays."""
    with deps.db.unit_of_work(write=False) as uow:
        snapshot = uow.snapshots.get(snapshot_id)
        source_admin = uow.secrets.get(snapshot_id, SOURCE_ADMIN_SECRET)
    if snapshot is None or snapshot.deleting:
        raise PermanentError(f"Snapshot {snapshot_id} cannot be branched: it no longer exists.")
    if source_admin is None:
        raise PermanentError(f"Snapshot {snapshot_id} cannot be branched: its source's credential is missing.")
    with deps.db.unit_of_work() as uow:
        uow.secrets.put(instance.id, SOURCE_ADMIN_SECRET, source_admin)
    snapshots = deps.engine(instance).snapshots(deps.version_for(instance.spec))
    workload = deps.workload(instance, placement)
    fixed = dataclasses.replace(workload, init=snapshots.fix_ups(placement), init_files=())
    deps.runtime.branch(placement, deps.resources(instance), snapshot_id, fixed)
    with deps.db.unit_of_work() as uow:
        uow.events.add(instance.id, "branched", f"branched from snapshot {snapshot_id}")
    log.info("instance %s: branched from snapshot %s", instance.id, snapshot_id)


def snapshot_kept(deps: ReconcilerDeps, snapshot_id: str | None) -> bool:
    """Is `snapshot_id` a snapshot still kept (completed, not being deleted)?"""
    if snapshot_id is None:
        return False
    with deps.db.unit_of_work(write=False) as uow:
        snapshot = uow.snapshots.get(snapshot_id)
    return snapshot is not None and not snapshot.deleting and snapshot.status is SnapshotStatus.COMPLETED


def source_admin(deps: ReconcilerDeps, instance_id: str) -> Secret:
    """The source's admin password kept by the `branch` step: the copy's server knows only that one."""
    with deps.db.unit_of_work(write=False) as uow:
        password = uow.secrets.get(instance_id, SOURCE_ADMIN_SECRET)
    if password is None:
        raise PermanentError(f"Instance {instance_id}: the credential of the instance it branches is missing.")
    return password

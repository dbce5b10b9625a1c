"""Backups streamed from snapshots ("backup.from_snapshot", on the backup; `from_snapshot` in the request):
the instance is held only while its snapshot is taken (the ordinary "snapshot.create" on its backup lane, a
fraction of a second); the backup is then streamed in the background by the engine's own backup tool from a
throwaway server started on a copy-on-write copy of the snapshot (docs/backups.md "From a snapshot").

The artifact is the backups issue's own (format, encryption, manifest, verification): only the server the
tool reads differs. That server is no instance: it lives at the runtime only, under the backup's id (its OS
user, directories and volume are named after it) at an address held in the backup's name, as a verified
backup's throwaway (`verify`), so a retry after a crash finds what an earlier attempt built and `cleanup`
removes it whatever happened. It knows the source's admin password (the data is the source's; copied to
the backup when it was asked for) and keeps it. The snapshot cannot be deleted while the backup streams
from it (422).

The snapshot stays: it is the tenant's (named after the backup, in their list, reserved against the
host's storage), and a restore of the backup on this host branches from it while it is kept instead of
streaming the backup back (`services.instances`). Steps: wait for the snapshot -> `building` ->
`allocate_address` -> `branch` -> `start`, `answers` -> `adopt` -> `stream` -> `cleanup` -> `complete` ->
`tidy`. A failure removes the throwaway server and the objects written, and fails the backup with the
reason; the snapshot is left as it is.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from reddwarf import fencing
from reddwarf.domain.backup import SOURCE_ADMIN_SECRET, Backup, BackupStatus
from reddwarf.domain.errors import NotYet, PermanentError
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.operations import Kind
from reddwarf.domain.snapshot import Snapshot, SnapshotStatus
from reddwarf.domain.status import Fault
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import OperationContext, StepResult
from reddwarf.workflows.reconcilers.backups import (
    CreateBackup,
    files_of,
    record_completed,
    remove_failed_objects,
    tidy,
)
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.lifecycle import allocate_address, start_server
from reddwarf.workflows.reconcilers.verify import START_HOLD, remove_throwaway

log = logging.getLogger(__name__)

FROM_SNAPSHOT = Kind.BACKUP_FROM_SNAPSHOT


def throwaway_spec(source: InstanceSpec, snapshot: Snapshot, backup: Backup) -> InstanceSpec:
    """The throwaway server's spec: the source's version and flavor on a volume the snapshot's size, no users
    or databases of its own (they come with the data)."""
    return dataclasses.replace(
        source, name=f"backup-{backup.id}", databases=(), users=(), volume_size_gb=snapshot.volume_size_gb,
        datastore=snapshot.datastore, datastore_version=snapshot.datastore_version, restore_backup_id=None,
        branch_source_id=None, branch_snapshot_id=snapshot.id,
    )


class BackupFromSnapshot:
    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            backup = uow.backups.get(ctx.resource_id)
            snapshot = None if backup is None or backup.snapshot_id is None else uow.snapshots.get(backup.snapshot_id)
            source = None if backup is None else uow.instances.get(backup.instance_id, include_deleted=True)
            admin = None if backup is None else uow.secrets.get(backup.id, SOURCE_ADMIN_SECRET)
        if backup is not None and backup.status is BackupStatus.COMPLETED and "complete" in ctx.journal:
            # Completed by this operation: a retry still tidies up what earlier attempts left.
            keep = str(ctx.journal["stream"]["attempt"])
            ctx.step("tidy", lambda: tidy(files_of(deps), backup, keep=keep))
            return
        if backup is None or backup.deleting or backup.status is BackupStatus.COMPLETED:
            ctx.step("cleanup", lambda: remove_throwaway(deps, ctx.resource_id))
            return
        snapshot = _taken(backup, snapshot)
        if source is None or admin is None:
            raise PermanentError(f"Backup {backup.id} cannot be taken: the record of instance "
                                 f"{backup.instance_id} or its credential is gone.")
        files = files_of(deps)
        ctx.store_step("building", lambda uow: self._building(uow, backup))
        spec = throwaway_spec(source.spec, snapshot, backup)
        engine = deps.engine_for(spec)
        version = deps.version_for(spec)
        endpoint = ctx.step("allocate_address", lambda: allocate_address(
            deps, backup.id, engine.default_port, offsets=engine.extra_port_offsets))
        placement = deps.runtime.placement(backup.id, str(endpoint["address"]), int(endpoint["port"]))

        def branch() -> None:
            fix_ups = engine.snapshots(version).fix_ups(placement)
            workload = dataclasses.replace(deps.workload_with(spec, placement, admin), init=fix_ups, init_files=())
            deps.runtime.branch(placement, deps.resources_for(spec), snapshot.id, workload)

        ctx.step("branch", branch)
        start_server(ctx, deps, spec, backup.id, placement, password=admin, hold=START_HOLD)
        backups = engine.backups(version)
        ctx.step("adopt", lambda: backups.adopt(placement, admin, admin))

        def stream() -> StepResult:
            run = backups.backup(placement, admin, None)
            if run.tool is None:
                raise PermanentError(f"{spec.datastore} {spec.datastore_version}'s full backup reads no tool's "
                                     "stream: it cannot be taken from a snapshot.")
            return CreateBackup(deps).stream(files, backup, source, placement, run)

        result = ctx.step("stream", stream)
        ctx.step("cleanup", lambda: remove_throwaway(deps, backup.id))
        ctx.store_step("complete", lambda uow: self._complete(uow, backup, snapshot, result))
        ctx.step("tidy", lambda: tidy(files, backup, keep=str(result["attempt"])))
        log.info("backup %s of instance %s streamed from snapshot %s", backup.id, backup.instance_id, snapshot.id)

    def _building(self, uow: UnitOfWork, backup: Backup) -> None:
        uow.backups.start(backup.id)
        uow.events.add(backup.instance_id, "backup", f"backup {backup.id} streaming from snapshot {backup.snapshot_id}")

    def _complete(self, uow: UnitOfWork, backup: Backup, snapshot: Snapshot, result: StepResult) -> None:
        parsed = record_completed(uow, self.deps, files_of(self.deps), backup, result)
        uow.events.add(backup.instance_id, "backup",
                       f"backup {backup.id} completed from snapshot {snapshot.id} ({parsed.raw_bytes} bytes)")

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        deps = self.deps
        with deps.db.unit_of_work() as uow:
            backup = uow.backups.get(ctx.resource_id)
            if backup is None or backup.status is BackupStatus.COMPLETED or not ctx.lease.renew_in(uow):
                return
        try:
            remove_throwaway(deps, backup.id)
        except Exception:  # boundary: the fault is recorded; what is left is logged (docs/known-gaps.md)
            log.exception("backup %s: cannot remove the throwaway server it was streamed from", backup.id)
        fencing.current().confirm()
        with deps.db.unit_of_work() as uow:
            uow.backups.fail(backup.id, Fault(message=error.message, details=error.details, created=time.time()))
            uow.events.add(backup.instance_id, "backup", f"backup {backup.id} failed: {error.message}")
        remove_failed_objects(deps, backup)


def _taken(backup: Backup, snapshot: Snapshot | None) -> Snapshot:
    """The backup's snapshot once taken; NotYet while it is being taken, PermanentError if it failed or went."""
    if snapshot is None or snapshot.deleting:
        raise PermanentError(f"Backup {backup.id} cannot be taken: its snapshot {backup.snapshot_id} is gone.")
    if snapshot.status is SnapshotStatus.NEW:
        raise NotYet(f"snapshot {snapshot.id} is being taken", delay=1.0)
    if snapshot.status is not SnapshotStatus.COMPLETED:
        why = "" if snapshot.fault is None else f": {snapshot.fault.message}"
        raise PermanentError(f"Backup {backup.id} cannot be taken: its snapshot {snapshot.id} failed{why}")
    return snapshot


def handlers(deps: ReconcilerDeps) -> dict[str, BackupFromSnapshot]:
    return {FROM_SNAPSHOT: BackupFromSnapshot(deps)}

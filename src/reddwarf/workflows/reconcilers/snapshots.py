"""Taking and deleting snapshots of instance volumes (`snapshot.create` on the instance, `snapshot.delete`
on the snapshot; docs/branches.md).

Taking one: the instance's engine quiesces it and the runtime snapshots its volume under the bounded freeze,
with the files its copies need (`Snapshots.carried`); the snapshot is then COMPLETED. Every call is
idempotent (the runtime keeps a taken snapshot), so a re-run after a crash completes it. A failure records a
fault on the snapshot (FAILED), gives back its storage reservation and removes whatever image was made.
Deleting one removes its image and carried files, its secret and its reservation; branches made from it
keep their own copies.
"""

from __future__ import annotations

import logging
import time

from reddwarf import fencing
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.operations import Kind, SnapshotCreate, payload_of
from reddwarf.domain.secret import ADMIN_SECRET
from reddwarf.domain.snapshot import SnapshotStatus
from reddwarf.domain.status import Fault
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps

log = logging.getLogger(__name__)


class CreateSnapshot:
    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        payload = payload_of(ctx.op.kind, ctx.op.payload, SnapshotCreate)
        with deps.db.unit_of_work(write=False) as uow:
            snapshot = uow.snapshots.get(payload.snapshot_id)
            found = uow.instances.get_with_secrets(ctx.resource_id)
        if snapshot is None or snapshot.status is not SnapshotStatus.NEW:
            return  # deleted meanwhile, or already ended
        if found is None or found[0].deleting or found[0].endpoint is None:
            raise PermanentError(f"Instance {ctx.resource_id} no longer exists: snapshot {snapshot.id} was not taken.")
        instance, owned = found
        admin = owned.get(ADMIN_SECRET)
        if admin is None:
            raise PermanentError(f"The admin credential of instance {instance.id} is missing.")
        placement = deps.placement(instance)
        engine_snapshots = deps.engine(instance).snapshots(deps.version_for(instance.spec))

        def take() -> None:
            with engine_snapshots.quiesced(placement, admin):
                deps.runtime.snapshot(placement, snapshot.id, engine_snapshots.carried())

        ctx.step("snapshot", take)
        fencing.current().confirm()
        with deps.db.unit_of_work() as uow:
            uow.snapshots.complete(snapshot.id)
            uow.events.add(instance.id, "snapshot", f"snapshot {snapshot.id} taken")
        log.info("instance %s: snapshot %s taken", instance.id, snapshot.id)

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        deps = self.deps
        payload = payload_of(ctx.op.kind, ctx.op.payload, SnapshotCreate)
        try:
            deps.runtime.remove_snapshot(payload.snapshot_id)
        except (PermanentError, TemporaryError, OSError) as exc:  # the fault below says what failed
            log.warning("snapshot %s: its image could not be removed after the failure: %s", payload.snapshot_id, exc)
        with deps.db.unit_of_work() as uow:
            if not ctx.lease.renew_in(uow):
                return
            uow.snapshots.fail(payload.snapshot_id, Fault(message=error.message, details=error.details,
                                                          created=time.time()))
            uow.reservations.release(payload.snapshot_id)


class DeleteSnapshot:
    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            snapshot = uow.snapshots.get(ctx.resource_id)
        if snapshot is None:
            return
        ctx.step("remove", lambda: deps.runtime.remove_snapshot(snapshot.id))
        fencing.current().confirm()
        with deps.db.unit_of_work() as uow:
            uow.snapshots.mark_deleted(snapshot.id)
            uow.secrets.delete_owner(snapshot.id)
            uow.reservations.release(snapshot.id)
            uow.events.add(snapshot.instance_id, "snapshot", f"snapshot {snapshot.id} deleted")

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        with self.deps.db.unit_of_work() as uow:
            if not ctx.lease.renew_in(uow):
                return
            uow.snapshots.fail(ctx.resource_id, Fault(message=error.message, details=error.details,
                                                      created=time.time()), status=SnapshotStatus.DELETE_FAILED)


def handlers(deps: ReconcilerDeps) -> dict[str, CreateSnapshot | DeleteSnapshot]:
    return {Kind.SNAPSHOT_CREATE.value: CreateSnapshot(deps), Kind.SNAPSHOT_DELETE.value: DeleteSnapshot(deps)}

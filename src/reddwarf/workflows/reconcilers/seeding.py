"""A new replica's data (docs/replication.md, "Seeding"): steps of its create, after `source_ready` made the
primary's slot for it, so that whatever the seed holds, the primary kept every later change.

`seed_from` decides once how (journaled: a retry never switches paths over a half-made volume), by
`domain.replication.choose_seed`:

- a copy-on-write snapshot of the primary (milliseconds whatever the size; nothing read through its server);
- the engine's copy from the primary's server (pg_basebackup through the slot; Redis syncs itself);
- a full backup of the primary, taken for this replica (Trove's way, and MariaDB's only one without a
  snapshot): recorded with its "backup.create" as a CHILD of the create in the transaction that journals
  `seed_backup`, so exactly once; the create waits for it (`seed_backup.taken`; a failed backup fails the
  create with its reason), then restores it into the replica's volume with the engine's `seed_from_backup`
  fix-ups (MariaDB: the backup's GTID position as its binary log's state). The backup is a real one, in the
  tenant's list while it exists, and goes once the replica answers, or once its create failed (`forget`).

Each path is idempotent: `seed` does nothing once the runtime's init marker is there, and a crash at any
point resumes from the journal (the child from its own).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from reddwarf.domain.backup import DEFAULT_CONTAINER, NAME_MAX, Backup, BackupStatus
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import Instance
from reddwarf.domain.operations import REGISTRY, BackupCreate, Kind
from reddwarf.domain.replication import Seed, choose_seed
from reddwarf.domain.workload import Placement
from reddwarf.engines.base import Replication
from reddwarf.store.records import Operation
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import OperationContext, StepResult
from reddwarf.workflows.reconcilers import restore
from reddwarf.workflows.reconcilers.branch import copy_volume
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.replication import primary_of

log = logging.getLogger(__name__)

SEED_BACKUP_NAME = "replica {name}"


def seed_from(deps: ReconcilerDeps, replica: Instance) -> dict[str, Any]:
    """How the replica's data is made (module docstring), with the id of the backup to take when it is one."""
    primary = primary_of(deps, replica)
    refusal = deps.runtime.snapshot_refusal(deps.placement(primary))
    try:
        chosen = choose_seed(deps.replica_seed, refusal, _replication(deps, replica).seeds(), deps.backups is not None)
    except ValueError as exc:
        raise PermanentError(f"Replica {replica.id}: {exc}.") from None
    log.info("replica %s of %s is seeded from %s", replica.id, primary.id,
             "a snapshot" if chosen is Seed.SNAPSHOT else "a backup" if chosen is Seed.BACKUP else "its server")
    # "snapshot" too, the only key a release before backup seeds reads (a worker of it, during a rolling upgrade,
    # may resume this create); `chosen_seed` reads a journal of such a release the same way.
    found: dict[str, Any] = {"seed": chosen.value, "snapshot": chosen is Seed.SNAPSHOT}
    if chosen is Seed.BACKUP:
        found["backup"] = str(uuid.uuid4())
    return found


def chosen_seed(chosen: StepResult) -> Seed:
    if "seed" in chosen:
        return Seed(str(chosen["seed"]))
    return Seed.SNAPSHOT if chosen.get("snapshot") else Seed.NETWORK


def take_backup(ctx: OperationContext, deps: ReconcilerDeps, replica: Instance, chosen: StepResult) -> None:
    """The primary's backup for this replica, a child of its create, and the wait for it (module docstring);
    nothing for another seed."""
    if chosen_seed(chosen) is not Seed.BACKUP:
        return
    backup_id = str(chosen["backup"])
    if "seed_backup" not in ctx.journal:
        primary = primary_of(deps, replica)
        ctx.store_step("seed_backup", lambda uow: _record_backup(uow, ctx.op, deps, replica, primary, backup_id))
    ctx.wait_children("seed_backup.taken", timeout=REGISTRY[Kind.BACKUP_CREATE].deadline)


def _record_backup(
    uow: UnitOfWork, parent: Operation, deps: ReconcilerDeps, replica: Instance, primary: Instance, backup_id: str
) -> StepResult:
    version = deps.version_for(primary.spec)
    now = time.time()
    uow.backups.add(Backup(
        id=backup_id, project_id=primary.project_id, name=SEED_BACKUP_NAME.format(name=replica.spec.name)[:NAME_MAX],
        description=f"Taken to seed replica {replica.id} of instance {primary.id}; deleted once the replica is made.",
        instance_id=primary.id, datastore=version.datastore, datastore_version=version.name,
        datastore_version_id=version.id, status=BackupStatus.NEW,
        strategy=deps.engine(primary).backups(version).strategies().full,
        container=uow.backups.container_for(primary.project_id, primary.id) or DEFAULT_CONTAINER,
        created=now, updated=now,
    ))
    child = uow.operations.enqueue_child(parent, Kind.BACKUP_CREATE, primary.id,
                                         BackupCreate(backup_id=backup_id).model_dump(mode="json"))
    uow.events.add(primary.id, "backup", f"backup {backup_id} requested, to seed replica {replica.id}")
    return {"child": child}


def seed(deps: ReconcilerDeps, replica: Instance, placement: Placement, chosen: StepResult) -> None:
    """The replica's data, as `seed_from` chose: its primary quiesced (a checkpoint) and snapshotted, the
    replica's volume a copy of that snapshot with the engine's `seed_from_copy` fix-ups, the snapshot removed;
    or its volume prepared and the backup taken for it restored with the engine's `seed_from_backup`
    fix-ups; or its volume prepared and the engine's seed run into it. Nothing once initialised."""
    if deps.runtime.initialised(placement):
        return
    how = chosen_seed(chosen)
    if how is Seed.NETWORK:
        deps.runtime.prepare(placement, deps.resources(replica))
        deps.runtime.initialise(placement, deps.workload(replica, placement))
        return
    replication = _replication(deps, replica)
    primary = primary_of(deps, replica)
    if how is Seed.SNAPSHOT:
        copy_volume(deps, replica, placement, primary, deps.admin_password(primary.id),
                    replication.seed_from_copy(placement))
        what = f"a snapshot of instance {primary.id}"
    else:
        backup_id = str(chosen["backup"])
        with deps.db.unit_of_work(write=False) as uow:
            backup = uow.backups.get(backup_id)
        if backup is None or backup.status is not BackupStatus.COMPLETED:
            raise PermanentError(f"Backup {backup_id}, taken to seed replica {replica.id}, is gone or not completed.")
        fix_ups = replication.seed_from_backup(placement, backup.metadata)
        deps.runtime.prepare(placement, deps.resources(replica))
        restore.restore_into(deps, replica.spec, backup_id, placement, lambda: deps.workload(replica, placement),
                             after=fix_ups)
        what = f"backup {backup_id} of instance {primary.id}"
    with deps.db.unit_of_work() as uow:
        uow.events.add(replica.id, "replica", f"seeded from {what}")
    log.info("replica %s: seeded from %s", replica.id, what)


def by_backup(chosen: StepResult | None) -> bool:
    """Was the replica whose `seed_from` chose `chosen` (None: not chosen yet) seeded from a backup?"""
    return chosen is not None and chosen_seed(chosen) is Seed.BACKUP


def forget(uow: UnitOfWork, chosen: StepResult | None) -> None:
    """The backup taken to seed a replica goes (its create ended, made or failed); kept when the tenant
    chained an incremental onto it meanwhile (theirs now). Nothing for another seed."""
    if chosen is None or not by_backup(chosen):  # (None: for the type checker; by_backup says so too)
        return
    restore.forget_backup(uow, str(chosen["backup"]), "to seed a replica")


def forget_for(uow: UnitOfWork, replica_id: str) -> None:
    """A replica deleted while it was seeded (its create superseded): the backup taken for it goes, as its
    create would have made it go."""
    for op in uow.operations.history_for(replica_id):
        if op.kind == Kind.REPLICA_CREATE:
            forget(uow, uow.operations.steps(op.id).get("seed_from"))


def _replication(deps: ReconcilerDeps, replica: Instance) -> Replication:
    found = deps.engine(replica).replication(deps.version_for(replica.spec))
    if found is None:
        raise PermanentError(f"{replica.spec.datastore} {replica.spec.datastore_version} has no replication.")
    return found


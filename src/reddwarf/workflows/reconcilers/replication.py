"""Replicas: a member's place in its set as its server sees it, the primary made ready for its replicas, and a
replica's leaving (docs/replication.md).

A replica is created by the create reconciler with two steps of its own in place of `initialise`:
`source_ready` (the primary's files rewritten for the set's members and reloaded, its slot for the new
replica made: `prepare_source`) and `initialise`, whose init is the engine's seed from the primary. Both are
idempotent; the slot of a replica that never finished is kept until the replica is deleted.
"""

from __future__ import annotations

import logging

from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.replication import ReplicationSet, slot_name
from reddwarf.store.repositories.replication import StaleSet
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps

log = logging.getLogger(__name__)

_CAS_ATTEMPTS = 5


def prepare_source(deps: ReconcilerDeps, replica: Instance) -> None:
    """Make the primary of `replica`'s set ready for every replica it has now (the new one included): its
    server's files rewritten for the members and its socket directory opened to them (no restart), then
    the engine's `prepare_source` (slots, the replication account, the files loaded)."""
    with deps.db.unit_of_work(write=False) as uow:
        found = uow.replication.set_of(replica.id)
    if found is None or found.member(replica.id) is None:
        raise PermanentError(f"Instance {replica.id} is no longer a member of a replication set.")
    _converge_primary(deps, found)


def _converge_primary(deps: ReconcilerDeps, found: ReplicationSet) -> None:
    with deps.db.unit_of_work(write=False) as uow:
        primary = uow.instances.get(found.primary_id)
    if primary is None or primary.deleting or primary.endpoint is None:
        raise PermanentError(f"The replication source {found.primary_id} no longer exists.")
    replication = deps.engine(primary).replication(deps.version_for(primary.spec))
    if replication is None:
        raise PermanentError(f"{primary.spec.datastore} {primary.spec.datastore_version} has no replication.")
    placement = deps.placement(primary)
    admin = deps.admin_password(primary.id)
    workload = deps.workload_with(primary.spec, placement, admin, deps.topology_of(found, primary.id))
    deps.runtime.refresh(placement, workload)
    replication.prepare_source(placement, admin, tuple(slot_name(r) for r in found.replica_ids))


def leave(deps: ReconcilerDeps, instance: Instance) -> None:
    """Take a replica being deleted out of its set (compare-and-swap, read again when another change won); a
    no-op once it is out."""
    for _ in range(_CAS_ATTEMPTS):
        with deps.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(instance.id)
        if found is None:
            return
        if found.primary_id == instance.id:
            raise PermanentError(f"Instance {instance.id} is the primary of its replication set.")
        try:
            with deps.db.unit_of_work() as uow:
                remaining = uow.replication.remove(found, instance.id)
                uow.events.add(found.primary_id, "replica", f"replica {instance.id} left the replication set")
        except StaleSet:
            continue
        if remaining is None:
            log.info("replication set %s dissolved: its last replica %s left", found.id, instance.id)
        return
    raise TemporaryError(f"The replication set of instance {instance.id} keeps changing; retrying.")


def release(deps: ReconcilerDeps, instance_id: str, primary_id: str) -> None:
    """The primary a deleted replica left drops its slot (and, its set dissolved, is a single instance again:
    its files and socket directory). A primary that does not answer keeps the slot until the set's next
    change: the WAL it pins is bounded (`max_slot_wal_keep_size`), and the delete goes on."""
    try:
        with deps.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(primary_id)
        if found is None:
            _single_again(deps, primary_id)
        else:
            _converge_primary(deps, found)
    except (TemporaryError, PermanentError) as exc:
        log.warning("primary %s that replica %s left was not updated: %s", primary_id, instance_id, exc.message)
        with deps.db.unit_of_work() as uow:
            uow.events.add(primary_id, "replica", f"the slot of replica {instance_id} is dropped at the set's next "
                           f"change (the primary did not answer: {exc.message})")


def _single_again(deps: ReconcilerDeps, primary_id: str) -> None:
    """The primary of a dissolved set: its files and socket directory those of a single instance again, and
    every Reddwarf slot on it dropped."""
    with deps.db.unit_of_work(write=False) as uow:
        primary = uow.instances.get(primary_id)
    if primary is None or primary.deleting or primary.endpoint is None:
        return
    replication = deps.engine(primary).replication(deps.version_for(primary.spec))
    if replication is None:
        return
    placement = deps.placement(primary)
    admin = deps.admin_password(primary.id)
    deps.runtime.refresh(placement, deps.workload_with(primary.spec, placement, admin, None))
    replication.prepare_source(placement, admin, ())

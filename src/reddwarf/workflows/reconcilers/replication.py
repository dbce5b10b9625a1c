"""Replicas: a member's place in its set as its server sees it, the primary made ready for its replicas, and a
replica's leaving (docs/replication.md).

A replica is created by the create reconciler with steps of its own in place of `prepare` and `initialise`:
`source_ready` (the primary's files rewritten for the set's members and reloaded, its slot for the new
replica made: `prepare_source`), then its seed (`reconcilers.seeding`: a snapshot, the engine's copy over the
network, or a backup taken by a child operation). All are idempotent; the slot of a replica that never
finished is kept until the replica is deleted. The slot exists before any copy is taken, so the primary keeps
every WAL record the copy lacks.
"""
from __future__ import annotations

import logging
import secrets

from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.operations import Kind
from reddwarf.domain.replication import ReplicationSet, slot_name
from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines.base import Replication
from reddwarf.store.repositories.replication import StaleSet
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.endpoints import publish, release_reader
from reddwarf.workflows.reconcilers.lifecycle import record as _record
from reddwarf.workflows.reconcilers.lifecycle import record_failure
from reddwarf.workflows.reconcilers.sync_keeper import say_commits

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
    converge_primary(deps, found)


def primary_of(deps: ReconcilerDeps, replica: Instance) -> Instance:
    with deps.db.unit_of_work(write=False) as uow:
        found = uow.replication.set_of(replica.id)
        primary = None if found is None else uow.instances.get(found.primary_id)
    if found is None or primary is None or primary.deleting or primary.endpoint is None:
        raise PermanentError(f"The replication source of instance {replica.id} no longer exists.")
    return primary


def converge_primary(deps: ReconcilerDeps, found: ReplicationSet) -> None:
    with deps.db.unit_of_work(write=False) as uow:
        primary = uow.instances.get(found.primary_id)
    if primary is None or primary.deleting or primary.endpoint is None:
        raise PermanentError(f"The replication source {found.primary_id} no longer exists.")
    replication = deps.engine(primary).replication(deps.version_for(primary.spec))
    if replication is None:
        raise PermanentError(f"{primary.spec.datastore} {primary.spec.datastore_version} has no replication.")
    placement = deps.placement(primary)
    admin = deps.admin_password(primary.id)
    topology = deps.topology_of(found, primary.id)
    deps.runtime.refresh(placement, deps.workload_with(primary.spec, placement, admin, topology))
    replication.prepare_source(placement, admin, tuple(slot_name(r) for r in found.replica_ids), topology)
    mirror_accounts(deps, primary, found.replica_ids)


def mirror_accounts(deps: ReconcilerDeps, primary: Instance, replica_ids: tuple[str, ...] | list[str]) -> None:
    """Where replication does not bring the primary's accounts (Redis), copy them to each replica that answers
    now; one that does not gets them at the set's next change (an event says so). Nothing for other engines."""
    replication = deps.engine(primary).replication(deps.version_for(primary.spec))
    if replication is None or replication.carries_accounts() or not replica_ids:
        return
    source = deps.placement(primary)
    admin = deps.admin_password(primary.id)
    for replica_id in replica_ids:
        with deps.db.unit_of_work(write=False) as uow:
            replica = uow.instances.get(replica_id)
        if replica is None or replica.deleting or replica.endpoint is None:
            continue
        try:
            replication.mirror_accounts(source, deps.placement(replica), admin)
        except (TemporaryError, PermanentError) as exc:
            log.warning("accounts of %s not copied to replica %s: %s", primary.id, replica_id, exc.message)
            with deps.db.unit_of_work() as uow:
                uow.events.add(replica_id, "replica", "its source's accounts were not copied to it now (it does "
                               f"not answer: {exc.message}); they are at the set's next change")


def mirror_from_primary(deps: ReconcilerDeps, replica: Instance) -> None:
    """A new replica's accounts made its primary's, where replication does not bring them (a step of its
    create, once its server answers); it must succeed (its tenant logs in next)."""
    primary = primary_of(deps, replica)
    replication = deps.engine(primary).replication(deps.version_for(primary.spec))
    if replication is None:
        raise PermanentError(f"{primary.spec.datastore} {primary.spec.datastore_version} has no replication.")
    replication.mirror_accounts(deps.placement(primary), deps.placement(replica), deps.admin_password(primary.id))


def leave(deps: ReconcilerDeps, instance: Instance) -> None:
    """Take a replica being deleted out of its set (compare-and-swap, read again when another change won); a
    no-op once it is out. The set is dissolved with its last replica, unless its writer endpoint is not its
    primary's own address (the founder was replaced): the set, with that endpoint, stays while its primary
    lives, so the tenant's connection string keeps leading to it."""
    for _ in range(_CAS_ATTEMPTS):
        with deps.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(instance.id)
            primary = uow.instances.get(found.primary_id) if found is not None else None
        if found is None:
            return
        if found.primary_id == instance.id:
            raise PermanentError(f"Instance {instance.id} is the primary of its replication set.")
        own = primary.endpoint if primary is not None else None
        alone = found.writer is not None and (own is None or (own.address, own.port) != found.writer)
        try:
            with deps.db.unit_of_work() as uow:
                remaining = uow.replication.remove(found, instance.id, keep_alone=alone)
                uow.events.add(found.primary_id, "replica", f"replica {instance.id} left the replication set")
                if remaining is None:
                    release_reader(uow, found.id)
        except StaleSet:
            continue
        if remaining is None:
            log.info("replication set %s dissolved: its last replica %s left", found.id, instance.id)
        return
    raise TemporaryError(f"The replication set of instance {instance.id} keeps changing; retrying.")


def dissolve_alone(deps: ReconcilerDeps, instance_id: str) -> None:
    """The primary of a set of one is being deleted: the set goes, and its endpoints' addresses with it (the
    caller publishes the routes before the addresses can be given out again). A no-op once it is gone."""
    for _ in range(_CAS_ATTEMPTS):
        with deps.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(instance_id)
        if found is None:
            return
        if found.primary_id != instance_id or len(found.members) != 1:
            raise PermanentError(f"Instance {instance_id} is the primary of a replication set with replicas.")
        try:
            with deps.db.unit_of_work() as uow:
                uow.replication.dissolve(found)
                release_reader(uow, found.id)
                uow.events.add(instance_id, "replica", "its replication set and its endpoints are released")
        except StaleSet:
            continue
        log.info("replication set %s dissolved: its primary %s is deleted", found.id, instance_id)
        return
    raise TemporaryError(f"The replication set of instance {instance_id} keeps changing; retrying.")


def ask_converge(uow: UnitOfWork, primary_id: str, replica_id: str) -> None:
    """Have the primary a replica left brought in line with its set (`ConvergePrimary`): an operation of its
    own, on the primary, so that it runs in order with the primary's lifecycle and with the set's replica
    creates (a create accepted after it waits for it; one accepted before it is not undone by it)."""
    uow.operations.enqueue(Kind.SET_CONVERGE, primary_id)
    uow.events.add(primary_id, "replica", f"replica {replica_id} left: its slot is dropped")


class ConvergePrimary:
    """The primary's files, socket directory and slots as its set is now: a slot for each replica, none for a
    former one; a single instance's again when the set was dissolved. One attempt: a primary that does not
    answer keeps what it has until the set's next change (the WAL a slot pins is bounded by
    `max_slot_wal_keep_size`), with an event; never a fault on the primary."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        ctx.step("converge", lambda: self._converge(ctx.resource_id))

    def _converge(self, primary_id: str) -> None:
        deps = self.deps
        try:
            with deps.db.unit_of_work(write=False) as uow:
                found = uow.replication.set_of(primary_id)
            if found is None:
                _single_again(deps, primary_id)
            elif found.primary_id == primary_id:
                converge_primary(deps, found)
        except (TemporaryError, PermanentError) as exc:
            log.warning("primary %s was not brought in line with its set: %s", primary_id, exc.message)
            with deps.db.unit_of_work() as uow:
                uow.events.add(primary_id, "replica", "slots of former replicas are dropped at the set's next "
                               f"change (the primary did not answer: {exc.message})")

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        with self.deps.db.unit_of_work() as uow:
            uow.events.add(ctx.resource_id, "replica", f"{ctx.op.kind} failed: {error.message}")


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
    replication.prepare_source(placement, admin, (), None)
    say_commits(deps, primary, waiting=False)  # a strict set's last replica gone: nothing waits any more


NEXT_ADMIN_SECRET = "admin.next"


class DetachReplica:
    """DETACH: a replica becomes an independent read-write instance with an admin credential of its own.

    `mark` -> `membership` (its primary, journaled before it leaves) -> `leave_set` (compare-and-swap: from
    here on its workload has no upstream, so a restart meanwhile starts it as a replica of nobody, still
    read-only, until the promotion) -> `promote` -> `refresh` (its files and socket directory those of a
    single instance, loaded: the engine's `prepare_source` for no replica) -> `new_admin` -> `adopt` (the new
    password set, logged in with the set's) -> `admin` (the new one is the instance's) -> `release_slot` (asks
    its primary to drop the slot: `ConvergePrimary`) -> `ready`."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            instance = uow.instances.get(ctx.resource_id)
        if instance is None or instance.deleting:
            return
        if instance.replica_of is None and "membership" not in ctx.journal:
            raise PermanentError(f"Instance {instance.id} is not a replica.")
        ctx.store_step("mark", _record(instance, Observation.DETACHING, "detaching from its replication source"))
        left = ctx.step("membership", lambda: {"primary": instance.replica_of})
        ctx.step("leave_set", lambda: leave(deps, instance))
        ctx.step("routes", lambda: publish(deps))  # the set's reader endpoint no longer leads to it
        version = deps.version_for(instance.spec)
        engine = deps.engine(instance)
        replication = engine.replication(version)
        if replication is None:
            raise PermanentError(f"{instance.spec.datastore} {instance.spec.datastore_version} has no replication.")
        placement = deps.placement(instance)
        ctx.step("promote", lambda: replication.promote(placement, self._current_admin(instance.id)))
        ctx.step("refresh", lambda: self._refresh(replication, instance, placement))
        ctx.store_step("new_admin", lambda uow: self._new_admin(uow, instance.id))
        ctx.step("adopt", lambda: self._adopt(instance, placement))
        ctx.store_step("admin", lambda uow: self._admin_moved(uow, instance.id))
        if left.get("primary"):
            ctx.store_step("release_slot", lambda uow: ask_converge(uow, str(left["primary"]), instance.id))
        ctx.store_step("ready", _record(instance, Observation.READY,
                                        "detached: an independent read-write instance", clear_fault=True))

    def _refresh(self, replication: Replication, instance: Instance, placement: Placement) -> None:
        """Its files and socket directory those of a single instance, loaded, and nothing of its former set's
        replication left on it (MariaDB: the set's certificates and replication account)."""
        admin = self._current_admin(instance.id)
        self.deps.runtime.refresh(placement, self.deps.workload_with(instance.spec, placement, admin, None))
        replication.prepare_source(placement, admin, (), None)

    def _current_admin(self, instance_id: str) -> Secret:
        """The password the server accepts now: the new one once `adopt` set it, else the set's."""
        with self.deps.db.unit_of_work(write=False) as uow:
            fresh = uow.secrets.get(instance_id, NEXT_ADMIN_SECRET)
        return fresh if fresh is not None else self.deps.admin_password(instance_id)

    @staticmethod
    def _new_admin(uow: UnitOfWork, instance_id: str) -> None:
        if uow.secrets.get(instance_id, NEXT_ADMIN_SECRET) is None:
            uow.secrets.put(instance_id, NEXT_ADMIN_SECRET, Secret(secrets.token_urlsafe(24)))

    def _adopt(self, instance: Instance, placement: Placement) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            fresh = uow.secrets.get(instance.id, NEXT_ADMIN_SECRET)
        if fresh is None:  # moved already (a retry after `admin`'s work)
            return
        deps.engine(instance).backups(deps.version_for(instance.spec)).adopt(
            placement, deps.admin_password(instance.id), fresh)

    @staticmethod
    def _admin_moved(uow: UnitOfWork, instance_id: str) -> None:
        fresh = uow.secrets.get(instance_id, NEXT_ADMIN_SECRET)
        if fresh is not None:
            uow.secrets.put(instance_id, ADMIN_SECRET, fresh)
            uow.secrets.delete(instance_id, NEXT_ADMIN_SECRET)
            uow.events.add(instance_id, "admin", "the admin credential was rotated: the former set's is refused")

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        record_failure(self.deps, ctx, error)


def handlers(deps: ReconcilerDeps) -> dict[str, DetachReplica | ConvergePrimary]:
    return {Kind.REPLICA_DETACH: DetachReplica(deps), Kind.SET_CONVERGE: ConvergePrimary(deps)}

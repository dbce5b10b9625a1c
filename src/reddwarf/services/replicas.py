"""Replicas (Trove's `replica_of`): validate, then record the replicas, their place in the source's replication
set and their creates in one unit of work (docs/replication.md).

As in Trove, a replica takes its source's flavor, volume size and datastore version: a request that names any
of them, or locality, users, databases or a fixed address, is refused with Trove's message; `replica_count`
(1 to 3) replicas are made, named `name-1` ... `name-N` when there are several, and the answer is the first.
A replica of a replica is refused (403) unless the engine declares cascading (none does yet). The source must
be ACTIVE, and its running server able to be a source now (`Replication.blocker`: a server started before
replication was supported here needs a restart first, and the 422 says so). Every replica shares its source's
admin credential (a physical copy has the source's accounts byte for byte).
"""

from __future__ import annotations

import logging
import uuid

from reddwarf.domain import conditions
from reddwarf.domain.capabilities import Capability
from reddwarf.domain.errors import (
    BadRequest,
    CapabilityMissing,
    Conflict,
    Forbidden,
    TemporaryError,
    UnprocessableEntity,
)
from reddwarf.domain.instance import Instance, InstanceSpec
from reddwarf.domain.operations import REGISTRY, Kind
from reddwarf.domain.replication import MAX_REPLICA_COUNT, Mode, PolicyChange, ReplicationSet, SetPolicy
from reddwarf.domain.secret import ADMIN_SECRET
from reddwarf.domain.status import InstanceStatus
from reddwarf.identity.context import AuthContext
from reddwarf.services import capacity, catalog, live
from reddwarf.services.context import ServiceContext
from reddwarf.services.instances import CreateInstanceRequest, check_quota, validate_name
from reddwarf.services.lookup import load_instance
from reddwarf.store.repositories.replication import StaleSet
from reddwarf.store.uow import UnitOfWork

logger = logging.getLogger(__name__)


def _refuse_fields(request: CreateInstanceRequest) -> int:
    """Trove's refusals of what a replica cannot choose; the number of replicas asked for."""
    for field, present, message in (
        ("flavorRef", request.flavor_ref is not None, "Cannot specify flavor when creating replicas."),
        ("datastore", request.datastore_given, "Cannot specify datastore when creating replicas."),
        ("volume", request.volume_size is not None, "Cannot specify volume when creating replicas."),
        ("locality", request.locality is not None, "Cannot specify locality when creating replicas."),
        ("nics", request.nic_address, "Cannot specify IP address when creating replicas."),
        ("users", bool(request.users or request.databases), "Cannot create a replica with users or databases."),
        ("restorePoint", any(r is not None for r in (request.restore_point, request.branch_of,
                                                     request.branch_snapshot)),
         "Cannot create a replica from a backup, an instance or a snapshot: it is seeded from its source."),
        ("configuration", request.configuration is not None, "configuration is not supported yet by Reddwarf."),
        ("modules", bool(request.modules), "modules is not supported yet by Reddwarf."),
        ("access.allowed_cidrs", bool(request.allowed_cidrs), "access.allowed_cidrs is not supported yet by Reddwarf."),
    ):
        if present:
            raise BadRequest(message, field=field)
    count = 1 if request.replica_count is None else request.replica_count
    if not 1 <= count <= MAX_REPLICA_COUNT:
        raise BadRequest(f"replica_count must be between 1 and {MAX_REPLICA_COUNT}, not {count}.",
                         field="replica_count")
    return count


def _check_source(ctx: ServiceContext, source: Instance, source_id: str) -> None:
    if source.replica_of is not None:
        raise Forbidden(f"Cannot create a replica of a replica {source_id}.")
    if source.deleting or source.status is not InstanceStatus.ACTIVE:
        state = "DELETING" if source.deleting else source.status.value
        raise UnprocessableEntity(
            f"Instance {source_id} is not ready to be replicated (status {state}); it must be ACTIVE."
        )
    version = catalog.resolve_version(ctx, source.spec.datastore, source.spec.datastore_version, None, admin=True)
    engine = ctx.engines[version.datastore]
    replication = engine.replication(version)
    if replication is None or not engine.capabilities(version).has(Capability.REPLICATION):
        raise CapabilityMissing(version.datastore, version.name, Capability.REPLICATION.value)
    with live.reach(ctx, source) as (placement, admin):
        blocker = replication.blocker(placement, admin)
    if blocker is not None:
        raise UnprocessableEntity(f"Instance {source_id} cannot have replicas yet: {blocker}.")


def create(ctx: ServiceContext, auth: AuthContext, request: CreateInstanceRequest) -> Instance:
    """Record `replica_count` replicas of `request.replica_of` (status BUILD), each with a create operation;
    the first is returned. A refused request writes nothing."""
    count = _refuse_fields(request)
    name = validate_name(request.name)
    source_id = str(request.replica_of)
    with ctx.db.unit_of_work(write=False) as uow:
        source = load_instance(uow, auth, source_id)
    _check_source(ctx, source, source_id)
    if request.replication is not None:
        check_policy(ctx, source, request.replication)
    names = [name] if count == 1 else [validate_name(f"{name}-{n}") for n in range(1, count + 1)]
    storage_limit = capacity.limit(
        None if ctx.storage_capacity is None else ctx.storage_capacity(), ctx.settings.storage_overcommit_ratio
    )
    made: list[Instance] = []
    try:
        with ctx.db.unit_of_work() as uow:
            current = load_instance(uow, auth, source_id)  # again, in the writing transaction
            if current.replica_of is not None:
                raise Forbidden(f"Cannot create a replica of a replica {source_id}.")
            if current.deleting or current.status is not InstanceStatus.ACTIVE:  # a delete came in meanwhile
                raise UnprocessableEntity(f"Instance {source_id} is no longer ACTIVE; no replica was made.")
            admin = uow.secrets.get(source_id, ADMIN_SECRET)
            if admin is None:
                raise UnprocessableEntity(f"Instance {source_id} has lost its admin credential.")
            found = uow.replication.set_of(source_id)
            if found is None:  # a set's id is its first primary's runtime id (the local runtime's group)
                writer = None if current.endpoint is None else (current.endpoint.address, current.endpoint.port)
                policy = SetPolicy() if request.replication is None else request.replication.applied_to(SetPolicy())
                found = uow.replication.form(current.runtime_id, current.project_id, source_id, writer, policy)
            elif request.replication is not None:
                _change_policy(ctx, uow, found, request.replication.applied_to(found.policy))
            for replica_name in names:
                # A replica lives in its source's project (an admin may ask for one of any project's).
                check_quota(ctx, uow, current.project_id, current.spec.volume_size_gb)
                replica = _replica(ctx, current, replica_name, current.project_id)
                capacity.reserve_volume(uow, replica.id, "instance", current.spec.volume_size_gb, storage_limit)
                uow.instances.add(replica)
                uow.secrets.put(replica.id, ADMIN_SECRET, admin)
                made.append(replica)
            uow.replication.add_replicas(found, [r.id for r in made])
            for replica in made:
                ctx.enqueue(uow, Kind.REPLICA_CREATE, replica.id)
                uow.events.add(replica.id, "created", f"replica of instance {source_id} requested")
            uow.events.add(source_id, "replica", f"{len(made)} replica(s) requested: {', '.join(r.id for r in made)}")
    except StaleSet:
        raise UnprocessableEntity(
            f"The replication set of instance {source_id} changed while the replicas were recorded; try again."
        ) from None
    logger.info("instance %s: %d replica(s) requested in project %s: %s", source_id, len(made), source.project_id,
                ", ".join(r.id for r in made))
    made[0].replica_of = source_id
    return made[0]


def check_policy(ctx: ServiceContext, primary: Instance, change: PolicyChange) -> None:
    """Refuse a policy the set's engine cannot keep (BadRequest naming the field)."""
    if change.mode is Mode.SYNC:
        version = catalog.resolve_version(ctx, primary.spec.datastore, primary.spec.datastore_version, None,
                                          admin=True)
        engine = ctx.engines[version.datastore]
        if not engine.capabilities(version).has(Capability.SYNC_REPLICATION):
            raise BadRequest(f"replication.mode sync is not offered for {version.datastore} {version.name}: its "
                             "replication is asynchronous only.", field="replication.mode")


def set_policy(ctx: ServiceContext, auth: AuthContext, instance_id: str, change: PolicyChange) -> None:
    """Change the policy of the set whose primary is `instance_id` (PATCH/PUT `replication`)."""
    with ctx.db.unit_of_work(write=False) as uow:
        primary = load_instance(uow, auth, instance_id)
        found = uow.replication.set_of(instance_id)
    if found is None or found.primary_id != instance_id:
        raise BadRequest(f"Instance {instance_id} is not the primary of a replication set: replication is set on "
                         "a set's primary (or with replica_of when its first replica is made).",
                         field="replication")
    check_policy(ctx, primary, change)
    with ctx.db.unit_of_work() as uow:
        current = uow.replication.set_of(instance_id)
        if current is None or current.primary_id != instance_id:
            raise UnprocessableEntity(f"The replication set of instance {instance_id} changed meanwhile; try again.")
        _change_policy(ctx, uow, current, change.applied_to(current.policy))
    logger.info("instance %s: replication policy now %s", instance_id, change)


def _change_policy(ctx: ServiceContext, uow: UnitOfWork, found: ReplicationSet, policy: SetPolicy) -> None:
    """Record the set's new policy. A change of mode starts it asynchronous (the failover watch makes it
    synchronous once a replica can be: docs/failover.md) and has its primary's configuration loaded again."""
    if policy == found.policy:
        return
    mode_changed = policy.mode is not found.policy.mode
    uow.replication.set_policy(found.id, policy, mode_changed=mode_changed)
    if mode_changed:
        ctx.enqueue(uow, Kind.SET_CONVERGE, found.primary_id)
    sync = f" (durability {policy.durability.value})" if policy.mode is Mode.SYNC else ""
    uow.events.add(found.primary_id, "replication", f"replication set to mode {policy.mode.value}{sync}, automatic "
                   f"failover {'on' if policy.auto_failover else 'off'}")


def _replica(ctx: ServiceContext, source: Instance, name: str, project_id: str) -> Instance:
    spec = InstanceSpec(
        name=name,
        flavor_id=source.spec.flavor_id,
        volume_size_gb=source.spec.volume_size_gb,
        datastore=source.spec.datastore,
        datastore_version=source.spec.datastore_version,
        replica_source_id=source.id,
    )
    now = ctx.clock()
    initial = conditions.created("replica create requested", now)
    status, operating = conditions.derive(initial)
    return Instance(
        id=str(uuid.uuid4()), project_id=project_id, spec=spec, status=status, operating_status=operating,
        conditions=initial, created=now, updated=now,
    )


def _mark(
    uow: UnitOfWork, members: list[Instance], observation: conditions.Observation, event: str, message: str
) -> None:
    """The set's members show the operation from its acceptance on (in the request's transaction: a status
    that keeps changing under it, as the health loop writes, refuses the request and changes nothing)."""
    for member in members:
        try:
            uow.instances.record(member.id, observation, message, generation=member.generation)
        except TemporaryError:
            raise Conflict(f"The status of instance {member.id} is changing right now; try again.") from None
        uow.events.add(member.id, event, message)


def detach(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> None:
    """Trove's detach (`PUT /instances/{id}` with `replica_of` or `slave_of`): the replica becomes an independent
    read-write instance with its own admin credential (`instance.replica.detach`). 400 for an instance that is
    not a replica, 422 unless it is ACTIVE; asking again while one is pending changes nothing."""
    with ctx.db.unit_of_work() as uow:
        instance = load_instance(uow, auth, instance_id)
        pending = any(op.kind == Kind.REPLICA_DETACH for op in uow.operations.active_for(instance_id))
        if pending:
            return
        if instance.replica_of is None:
            raise BadRequest(f"Instance {instance_id} is not a replica: there is nothing to detach.",
                             field="replica_of")
        if instance.deleting or instance.status is not InstanceStatus.ACTIVE:
            state = "DELETING" if instance.deleting else instance.status.value
            raise UnprocessableEntity(f"Instance {instance_id} cannot be detached now (status {state}); it must be "
                                      "ACTIVE.")
        writer, _reader = instance.set_endpoints
        own = None if instance.endpoint is None else (instance.endpoint.address, instance.endpoint.port)
        if writer is not None and own == writer:
            # Its address leads to its set's primary: on its own it would be reached by nobody, and the set's
            # tenants would lose their writer endpoint.
            raise UnprocessableEntity(
                f"Instance {instance_id} cannot be detached: its address is its set's writer endpoint, which leads "
                f"to the primary {instance.replica_of}. Promote it back to primary first, or delete it.")
        op_id = ctx.enqueue(uow, Kind.REPLICA_DETACH, instance_id)
        uow.events.add(instance_id, "detach", f"detach from instance {instance.replica_of} requested")
    logger.info("instance %s: detach requested; operation %s", instance_id, op_id)


def promote(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> None:
    """Trove's `promote_to_replica_source` (switchover): the replica becomes its set's primary and every other
    member follows it, no acknowledged write lost (`instance.replica.promote`). 400 for an instance that is
    not a replica; 422 unless every member of its set is ACTIVE, or when the replica was last seen not
    streaming (its primary's latest writes would not reach it). Every member shows PROMOTE from now on."""
    with ctx.db.unit_of_work() as uow:
        instance = load_instance(uow, auth, instance_id)
        if any(op.kind == Kind.REPLICA_PROMOTE for op in uow.operations.active_for(instance_id)):
            return
        found = uow.replication.set_of(instance_id)
        if found is None or found.primary_id == instance_id:
            raise BadRequest(f"Instance {instance_id} is not a replica.", field="promote_to_replica_source")
        members = [uow.instances.get(member.instance_id) for member in found.members]
        for member in members:
            if member is None or member.deleting or member.status is not InstanceStatus.ACTIVE:
                state = "gone" if member is None else "DELETING" if member.deleting else member.status.value
                which = instance_id if member is None else member.id
                raise UnprocessableEntity(f"Instance {instance_id} cannot be promoted now: every member of its "
                                          f"replication set must be ACTIVE, and instance {which} is {state}.")
        health = instance.replication_health
        if health is not None and not health.state.streaming:
            raise UnprocessableEntity(
                f"Instance {instance_id} cannot be promoted now: it does not stream from its source "
                f"({health.state.detail or 'no reason given'}), so writes would be lost.")
        op_id = ctx.enqueue(uow, Kind.REPLICA_PROMOTE, instance_id)
        message = f"switchover requested: instance {instance_id} becomes the primary"
        _mark(uow, [m for m in members if m is not None], conditions.Observation.PROMOTING, "promote", message)
    logger.info("instance %s: promotion to primary of set %s requested; operation %s", instance_id, found.id, op_id)


def eject(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> None:
    """Trove's `eject_replica_source` (failover), on the source: it is fenced (its processes killed, and nothing
    starts it as a primary again), the most advanced replica is promoted and the others follow it
    (`instance.replica.eject`). 400 for an instance that is no replication source, and for a source that was
    healthy within `Settings.eject_after` seconds (Trove: it "has a current heartbeat"; promote it away
    instead); 422 when no replica is ACTIVE. Every member shows EJECT from now on."""
    with ctx.db.unit_of_work() as uow:
        source = load_instance(uow, auth, instance_id)
        if any(op.kind == Kind.REPLICA_EJECT for op in uow.operations.active_for(instance_id)):
            return
        found = uow.replication.set_of(instance_id)
        if found is None or found.primary_id != instance_id:
            raise BadRequest(f"Instance {instance_id} is not a replica source.", field="eject_replica_source")
        since = conditions.unhealthy_since(source.conditions)
        wait = ctx.settings.eject_after
        if since is None or ctx.clock() - since < wait:
            seen = "is healthy" if since is None else f"has been unhealthy for {ctx.clock() - since:.0f} s only"
            raise BadRequest(
                f"Replica Source {instance_id} cannot be ejected as it has a current heartbeat: it {seen}, and a "
                f"source is ejected only after {wait:g} s without one (promote a replica to switch over while "
                "it is alive).", field="eject_replica_source")
        replicas = [uow.instances.get(r) for r in found.replica_ids]
        members = [source, *(r for r in replicas if r is not None)]
        if not any(r is not None and not r.deleting and r.status is InstanceStatus.ACTIVE for r in replicas):
            raise UnprocessableEntity(f"Instance {instance_id} cannot be ejected now: none of its replicas is "
                                      "ACTIVE to take its place.")
        uow.operations.supersede(instance_id, REGISTRY[Kind.REPLICA_EJECT].supersedes)
        op_id = ctx.enqueue(uow, Kind.REPLICA_EJECT, instance_id)
        message = f"failover requested: instance {instance_id} is fenced and a replica takes its place"
        _mark(uow, members, conditions.Observation.EJECTING, "eject", message)
    logger.info("instance %s: ejected from set %s; operation %s", instance_id, found.id, op_id)

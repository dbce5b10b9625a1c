"""Instance use cases: create, show, list, rename, delete, restart and reset_status.

Each one checks scope first: a caller sees only its own project's instances (another project's id
answers 404, never 403, so existence does not leak); the admin role may reach any instance by id.
Writes record intent only, in ONE unit of work: the row (create: status BUILD) and an operation for the
durable workers ("instance.create", "instance.delete", "instance.restart", "instance.reconcile").
Statuses after creation are written by reconcilers, never here.

`reset_status` differs from Trove's on purpose: Trove forces the task to NONE and the status to ERROR
to unstick a lost RPC; here nothing is ever lost, so it clears the recorded fault and enqueues an
"instance.reconcile" operation that observes the real state and writes the status it finds.
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
import uuid
from dataclasses import dataclass

from reddwarf.domain import conditions
from reddwarf.domain.capabilities import Capability
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import BadRequest, CapabilityMissing, Forbidden, OverLimit, UnprocessableEntity
from reddwarf.domain.events import Event
from reddwarf.domain.instance import DatabaseSpec, Endpoint, Instance, InstanceSpec, UserSpec
from reddwarf.domain.operations import REGISTRY, Kind
from reddwarf.domain.pool import profile_of
from reddwarf.domain.replication import PolicyChange
from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.domain.status import InstanceStatus
from reddwarf.identity.context import AuthContext
from reddwarf.services import accounts, backups, branches, capacity, catalog, snapshots
from reddwarf.services.context import ServiceContext
from reddwarf.services.lookup import is_instance_id, load_instance
from reddwarf.store.uow import UnitOfWork

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 255


@dataclass(frozen=True, slots=True)
class CreateInstanceRequest:
    """A create request as a tenant sends it (Trove's create body), already parsed but not yet checked.

    Fields Reddwarf cannot honour yet are carried so that the service can refuse them by name.
    """

    name: str
    flavor_ref: str | None
    volume_size: int | None
    datastore_type: str | None = None
    datastore_version: str | None = None
    datastore_version_number: str | None = None
    databases: tuple[DatabaseSpec, ...] = ()
    users: tuple[UserSpec, ...] = ()
    availability_zone: str | None = None
    region_name: str | None = None
    restore_point: str | None = None
    branch_of: str | None = None
    branch_snapshot: str | None = None
    replica_of: str | None = None
    replica_count: int | None = None
    datastore_given: bool = False
    locality: str | None = None
    nic_address: bool = False
    configuration: str | None = None
    modules: tuple[str, ...] = ()
    allowed_cidrs: tuple[str, ...] = ()
    replication: PolicyChange | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list; `next_marker` is the id to pass as `marker` for the next page, if any."""

    items: tuple[Instance, ...]
    next_marker: str | None


def validate_name(name: str, field: str = "name") -> str:
    """Trove's instance name rules: non-empty, at most 255 characters, no control characters."""
    if not name or not name.strip():
        raise BadRequest(f"The instance {field} must not be empty.", field=field)
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(
            f"The instance {field} is {len(name)} characters long; the maximum is {MAX_NAME_LENGTH}.",
            field=field,
        )
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadRequest(f"The instance {field} must not contain control characters.", field=field)
    return name


# A create from a backup is its own kind: the same steps, with a deadline for a whole chain's restore.
CREATE_KINDS = frozenset({Kind.INSTANCE_CREATE, Kind.INSTANCE_RESTORE, Kind.REPLICA_CREATE})


def create_kind(spec: InstanceSpec) -> Kind:
    """A restore or a branch has the deadline of a restore (a branch's snapshot may wait on the source); a
    replica is created (seeded) by its own kind, which conflicts with its primary's lifecycle."""
    if spec.replica_source_id is not None:
        return Kind.REPLICA_CREATE
    copied = any(ref is not None for ref in (spec.restore_backup_id, spec.branch_source_id,
                                             spec.branch_snapshot_id))
    return Kind.INSTANCE_RESTORE if copied else Kind.INSTANCE_CREATE


def create(ctx: ServiceContext, auth: AuthContext, request: CreateInstanceRequest) -> tuple[Instance, Secret | None]:
    """Validate everything, then write the instance (status BUILD), its admin password and an
    "instance.create" operation in one unit of work. A refused request writes nothing. With
    `root_on_create`, also returns the root password the create's `root` step will set (shown once). A
    create with `replica_of` makes replicas instead (`services.replicas`)."""
    _refuse_unsupported(request)
    if request.replica_of is not None:  # the API hands a create of replicas to `services.replicas`
        raise BadRequest("replica_of: replicas are created by services.replicas.create.", field="replica_of")
    if request.replication is not None:
        raise BadRequest("replication is the policy of a replication set: give it when creating replicas (with "
                         "replica_of), or update the primary of a set.", field="replication")
    if request.replica_count is not None and request.replica_count > 1:
        raise BadRequest(f"Replica count only valid when creating replicas. Cannot create {request.replica_count} "
                         "instances.", field="replica_count")
    name = validate_name(request.name)
    if request.flavor_ref is None:
        raise BadRequest("flavorRef is required: the id of the flavor to run the instance with.", field="flavorRef")
    flavor = catalog.get_flavor(ctx, request.flavor_ref)
    volume_size = _validate_volume_size(ctx, request.volume_size)
    restore = None if request.restore_point is None else backups.restore_source(ctx, auth, request.restore_point)
    source = None if request.branch_of is None else branches.branch_source(ctx, auth, request.branch_of)
    snapshot = (None if request.branch_snapshot is None
                else snapshots.branch_snapshot(ctx, auth, request.branch_snapshot))
    datastore, version_name = request.datastore_type, request.datastore_version
    if restore is not None:  # by default, the backup's own datastore version
        datastore = datastore or restore.backup.datastore
        version_name = version_name or restore.backup.datastore_version
    if source is not None:  # by default, the source's
        datastore = datastore or source.spec.datastore
        version_name = version_name or source.spec.datastore_version
    if snapshot is not None:
        datastore = datastore or snapshot.datastore
        version_name = version_name or snapshot.datastore_version
    version = catalog.resolve_version(
        ctx, datastore, version_name, request.datastore_version_number, admin=auth.is_admin
    )
    if restore is not None:
        _check_restore_version(restore, version)
        backups.check_restore_volume(restore, volume_size)
        # A backup streamed from a snapshot still kept here: the restore branches from the snapshot instead.
        snapshot = snapshots.kept_for_restore(ctx, restore.backup, version.name, volume_size)
    if source is not None:
        branches.check_branch(f"instance {source.id}", source.spec.datastore, source.spec.datastore_version,
                              source.spec.volume_size_gb, version, volume_size)
    if snapshot is not None:
        branches.check_branch(f"snapshot {snapshot.id}", snapshot.datastore, snapshot.datastore_version,
                              snapshot.volume_size_gb, version, volume_size)
    engine = ctx.engines[version.datastore]
    _validate_users_and_databases(request)
    capabilities = engine.capabilities(version)
    if request.databases and not capabilities.has(Capability.DATABASES):
        raise CapabilityMissing(version.datastore, version.name, Capability.DATABASES.value)
    if request.users and not capabilities.has(Capability.USERS):
        raise CapabilityMissing(version.datastore, version.name, Capability.USERS.value)
    # Without a copy-on-write pool, a branch restores a backup of its source taken for it (`branches`).
    branch_backup_id = str(uuid.uuid4()) if source is not None and branches.via_backup(ctx) else None
    spec = InstanceSpec(
        name=name,
        flavor_id=flavor.id,
        volume_size_gb=volume_size,
        datastore=version.datastore,
        datastore_version=version.name,
        databases=request.databases,
        users=request.users,
        availability_zone=request.availability_zone,
        region_name=request.region_name,
        restore_backup_id=branch_backup_id if restore is None else restore.backup.id,
        branch_source_id=None if source is None else source.id,
        branch_snapshot_id=None if snapshot is None else snapshot.id,
    )
    engine.validate_spec(spec)
    # A user made with the instance obeys the users API's rules too: among them, the name of the engine's
    # root account (`root`) stays the root API's, so that root history and root enable mean one account.
    if spec.users:
        engine.validate_users(spec.users, "instance.users")
    now = ctx.clock()
    initial = conditions.created("create requested", now)
    status, operating = conditions.derive(initial)  # BUILD: the reconcilers write every later status
    instance = Instance(
        id=str(uuid.uuid4()),
        project_id=auth.project_id,
        spec=spec,
        status=status,
        operating_status=operating,
        conditions=initial,
        created=now,
        updated=now,
    )
    # A warm-pool server is a fresh one: a restore builds its own from the backup.
    pooled = restore is None and source is None and snapshot is None and ctx.settings.warm_pool.covers(spec)
    storage_limit = capacity.limit(
        None if ctx.storage_capacity is None else ctx.storage_capacity(), ctx.settings.storage_overcommit_ratio
    )
    with ctx.db.unit_of_work() as uow:
        check_quota(ctx, uow, auth.project_id, volume_size)
        # A warm-pool server of this profile, if one is ready, is the instance's from now on (its address,
        # admin password and volume reservation come with it; the create response already shows the address).
        taken = uow.pool.take(profile_of(spec), instance.id) if pooled else None
        if taken is not None:
            instance.workload_id = taken.slot_id
            instance.endpoint = Endpoint(taken.address, taken.port)
        capacity.reserve_volume(uow, instance.id, "instance", volume_size, storage_limit)
        if source is not None and branch_backup_id is not None:
            branches.record_backup(ctx, uow, source, branch_backup_id, name)
        uow.instances.add(instance)
        if taken is None:
            uow.secrets.put(instance.id, ADMIN_SECRET, Secret(secrets.token_urlsafe(24)))
        root_password = accounts.root_password_on_create(ctx, uow, instance, engine)
        op_id = ctx.enqueue(uow, create_kind(spec), instance.id)
        uow.events.add(instance.id, "created", f"create requested ({version.datastore} {version.name})")
        if taken is not None:
            uow.events.add(instance.id, "BUILD", f"took a warm-pool server, {taken.address}:{taken.port}")
    logger.info(
        "instance %s create requested in project %s (%s %s, flavor %s, %d GB); operation %s",
        instance.id, auth.project_id, version.datastore, version.name, flavor.id, volume_size, op_id,
    )
    return instance, root_password


def check_quota(ctx: ServiceContext, uow: UnitOfWork, project_id: str, volume_gb: int) -> None:
    """Trove's 413 overLimit naming every quota the new instance would exceed (instances, volume GB)."""
    max_instances, max_volume_gb = ctx.max_instances_per_project, ctx.max_volume_gb_per_project
    if max_instances is None and max_volume_gb is None:
        return
    count, used_gb = uow.instances.quota_usage(project_id)
    over = []
    if max_instances is not None and count + 1 > max_instances:
        over.append("instances")
    if max_volume_gb is not None and used_gb + volume_gb > max_volume_gb:
        over.append("volumes")
    if over:
        raise OverLimit(f"Quota exceeded for resources: {over}.")


def get(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> Instance:
    """One instance the caller may see, or `NotFound`."""
    with ctx.db.unit_of_work(write=False) as uow:
        return _load(uow, auth, instance_id)


def list_instances(
    ctx: ServiceContext, auth: AuthContext, *, limit: int | None = None, marker: str | None = None
) -> Page:
    """The caller's project's live instances, oldest first, `limit` (capped by the page size) at a time."""
    if limit is not None and limit < 1:
        raise BadRequest("limit must be a positive integer.", field="limit")
    page_size = min(limit, ctx.page_size) if limit is not None else ctx.page_size
    with ctx.db.unit_of_work(write=False) as uow:
        if marker is not None:
            seen = uow.instances.get(marker, include_deleted=True) if is_instance_id(marker) else None
            if seen is None or seen.project_id != auth.project_id:
                raise BadRequest(f"The marker {marker} does not name an instance of this project.", "marker")
        rows = uow.instances.list(auth.project_id, limit=page_size + 1, marker=marker)
    items = tuple(rows[:page_size])
    next_marker = items[-1].id if len(rows) > page_size and items else None
    return Page(items=items, next_marker=next_marker)


def events(ctx: ServiceContext, auth: AuthContext, instance_id: str, limit: int = 100) -> list[Event]:
    """What happened to an instance, oldest first: requests, status changes, restarts after a crash."""
    with ctx.db.unit_of_work(write=False) as uow:
        _load(uow, auth, instance_id)
        return uow.events.list(instance_id, limit=limit)


def rename(ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str) -> None:
    new_name = validate_name(name)
    with ctx.db.unit_of_work() as uow:
        instance = _load(uow, auth, instance_id)
        if instance.deleting:
            raise UnprocessableEntity(f"Instance {instance_id} is being deleted.")
        uow.instances.rename(instance_id, new_name)
    logger.info("instance %s renamed", instance_id)


def delete(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> None:
    """Mark the instance deleting, supersede a pending create or restart and enqueue "instance.delete".

    Idempotent: deleting an instance that is already being deleted changes nothing, unless that delete
    ended without finishing (failed at its deadline): then a new delete is enqueued.
    """
    with ctx.db.unit_of_work() as uow:
        instance = _load(uow, auth, instance_id)
        if instance.deleting and any(op.kind == Kind.INSTANCE_DELETE for op in uow.operations.active_for(instance_id)):
            logger.info("instance %s is already being deleted", instance_id)
            return
        if instance.replicas:  # Trove's ReplicaSourceDeleteForbidden
            raise Forbidden(f"Instance {instance_id} is the replication source of {len(instance.replicas)} "
                            f"replica(s) ({', '.join(instance.replicas)}): detach or delete them first.")
        uow.instances.mark_deleting(instance_id)
        superseded = uow.operations.supersede(instance_id, REGISTRY[Kind.INSTANCE_DELETE].supersedes)
        op_id = ctx.enqueue(uow, Kind.INSTANCE_DELETE, instance_id)
        uow.events.add(instance_id, "deleting", "delete requested")
    logger.info(
        "instance %s delete requested; operation %s, %d pending operation(s) superseded",
        instance_id, op_id, superseded,
    )


def restart(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> None:
    """Enqueue "instance.restart"; only an ACTIVE instance can restart (422 otherwise, as in Trove)."""
    with ctx.db.unit_of_work() as uow:
        instance = _load(uow, auth, instance_id)
        if instance.deleting or instance.status is not InstanceStatus.ACTIVE:
            state = "DELETING" if instance.deleting else instance.status.value
            raise UnprocessableEntity(
                f"Instance {instance_id} is not ready for a restart (status {state}); it must be ACTIVE."
            )
        if any(op.kind == Kind.INSTANCE_RESTART for op in uow.operations.active_for(instance_id)):
            logger.info("instance %s already has a restart pending", instance_id)
            return
        op_id = ctx.enqueue(uow, Kind.INSTANCE_RESTART, instance_id)
        uow.events.add(instance_id, "restart", "restart requested")
    logger.info("instance %s restart requested; operation %s", instance_id, op_id)


def reset_status(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> None:
    """Admin only: ask the reconcilers to bring the instance back to what its spec says.

    An instance whose create never finished gets a new "instance.create" (every step is idempotent, so it
    picks up whatever the failed one left); a former primary fenced by a failover "instance.replica.rejoin";
    any other gets "instance.reconcile". The reconciler, not this
    service, writes the status and clears the fault once the instance answers again.
    """
    if not auth.is_admin:
        raise Forbidden("Policy doesn't allow instance:reset_status to be performed.")
    with ctx.db.unit_of_work() as uow:
        instance = _load(uow, auth, instance_id)
        if instance.deleting:
            raise UnprocessableEntity(f"Instance {instance_id} is being deleted.")
        if uow.operations.active_for(instance_id):
            return
        created = any(
            op.kind in CREATE_KINDS and op.state == "done" for op in uow.operations.history_for(instance_id)
        )
        kind = Kind.INSTANCE_REPAIR if created else create_kind(instance.spec)
        if instance.fenced is not None:
            kind = Kind.REPLICA_REJOIN  # a former primary fenced by a failover starts only as a replica
        op_id = ctx.enqueue(uow, kind, instance_id)
        uow.events.add(instance_id, "reset_status", f"an admin asked for a reset ({kind})")
    logger.info("instance %s reset_status: %s requested; operation %s", instance_id, kind, op_id)


_load = load_instance


def _refuse_unsupported(request: CreateInstanceRequest) -> None:
    """Fields Trove accepts whose meaning Reddwarf cannot honour yet: refuse them by name."""
    unsupported: list[tuple[str, bool]] = [
        ("configuration", request.configuration is not None),
        ("modules", bool(request.modules)),
        ("access.allowed_cidrs", bool(request.allowed_cidrs)),
    ]
    for field, present in unsupported:
        if present:
            raise BadRequest(f"{field} is not supported yet by Reddwarf.", field=field)


def _check_restore_version(restore: backups.RestoreSource, version: DatastoreVersion) -> None:
    """A backup restores only into its own datastore version (an upgrade is a later issue's)."""
    backup = restore.backup
    if (version.datastore, version.name) != (backup.datastore, backup.datastore_version):
        raise BadRequest(
            f"Backup {backup.id} is of {backup.datastore} {backup.datastore_version}; it can only be restored "
            f"into that datastore version, not {version.datastore} {version.name}.", field="datastore.version",
        )


def _validate_volume_size(ctx: ServiceContext, size: int | None) -> int:
    maximum = ctx.settings.max_volume_size_gb
    if size is None:
        raise BadRequest("volume.size is required: the size of the data volume in GB.", field="volume.size")
    if size <= 0:
        raise BadRequest(f"volume.size must be a positive number of GB, not {size}.", field="volume.size")
    if size > maximum:
        raise BadRequest(
            f"volume.size {size} GB exceeds the maximum volume size of {maximum} GB.", field="volume.size"
        )
    return size


def _validate_users_and_databases(request: CreateInstanceRequest) -> None:
    seen_databases: set[str] = set()
    for index, database in enumerate(request.databases):
        if not database.name:
            raise BadRequest(f"databases[{index}].name must not be empty.", field=f"databases[{index}].name")
        if database.name in seen_databases:
            raise BadRequest(
                f"databases[{index}].name: database {database.name} is listed twice.",
                field=f"databases[{index}].name",
            )
        seen_databases.add(database.name)
    seen_users: set[tuple[str, str]] = set()
    for index, user in enumerate(request.users):
        if not user.name:
            raise BadRequest(f"users[{index}].name must not be empty.", field=f"users[{index}].name")
        if not user.password:
            raise BadRequest(
                f"users[{index}].password is required and must not be empty.", field=f"users[{index}].password"
            )
        if (user.name, user.host) in seen_users:
            raise BadRequest(
                f"users[{index}].name: user {user.name}@{user.host} is listed twice.", field=f"users[{index}].name"
            )
        seen_users.add((user.name, user.host))

"""The instance operations: create, delete, restart, repair, each a sequence of journaled, idempotent steps.

Every step may run twice (a worker can die after doing a step's work and before journaling it), so each
one checks the world before it changes it. Status is written here (and by the health sweep) and nowhere else
apart from the initial BUILD a service writes when it records the create: as an `Observation` on the
instance's conditions, from which the store derives Trove's statuses (`domain.conditions`).
"""

from __future__ import annotations

import logging

from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import NotYet, PermanentError
from reddwarf.domain.instance import Endpoint, Instance
from reddwarf.domain.operations import Kind
from reddwarf.domain.pool import PoolTarget
from reddwarf.domain.secret import ROOT_SECRET, Secret
from reddwarf.domain.workload import Placement
from reddwarf.workflows.kernel.context import OperationContext, StepResult
from reddwarf.workflows.reconcilers import archive, branch, endpoints, pool, replication, restore, seeding
from reddwarf.workflows.reconcilers.deps import ADMIN_SECRET, ReconcilerDeps
from reddwarf.workflows.reconcilers.lifecycle import allocate_address, start_server
from reddwarf.workflows.reconcilers.lifecycle import record as _record
from reddwarf.workflows.reconcilers.lifecycle import record_failure as _record_failure

log = logging.getLogger(__name__)

CREATE = Kind.INSTANCE_CREATE
RESTORE = Kind.INSTANCE_RESTORE
DELETE = Kind.INSTANCE_DELETE
RESTART = Kind.INSTANCE_RESTART
REPAIR = Kind.INSTANCE_REPAIR
SOCKET_HOSTS = frozenset({"%", "localhost"})
# Seconds a restored server's first start is waited for in place (it replays WAL or loads a snapshot).
RESTORE_START_HOLD = 30.0
# Seconds a login-free ping of the tenant endpoint waits for an answer (part of health's detection bound).
PING_TIMEOUT = 2.0


def _copied(instance: Instance) -> bool:
    """A restore, a branch or a replica: its server is built from a copy, never taken from the warm pool."""
    spec = instance.spec
    return any(ref is not None for ref in (spec.restore_backup_id, spec.branch_source_id, spec.branch_snapshot_id,
                                           spec.replica_source_id))


def _load(deps: ReconcilerDeps, instance_id: str) -> Instance:
    with deps.db.unit_of_work(write=False) as uow:
        instance = uow.instances.get(instance_id)
    if instance is None:
        raise PermanentError(f"Instance {instance_id} no longer exists.")
    return instance


def endpoint_answers(deps: ReconcilerDeps, instance: Instance, placement: Placement) -> bool:
    """The tenant endpoint (TCP) accepts connections and its listener belongs to the instance's OS user.

    Login-free: no credential ever goes over TCP, where anyone on the host could have bound the address
    while the server was down (the engine logs a listener of another user, naming its uid)."""
    return deps.engine(instance).ping(placement, timeout=PING_TIMEOUT)


def tenant_login(
    deps: ReconcilerDeps, instance: Instance, placement: Placement, admin: Secret | None = None
) -> bool:
    """A tenant can log in: as the first tenant user if the create named one, over the instance's unix socket
    (the engine checks that its server runs as the instance's OS user before sending the password).
    `admin`: the admin password when the caller holds it already (else it is read from the store)."""
    engine = deps.engine(instance)
    # Over the unix socket a MariaDB client comes from `localhost`: only a user whose host admits it can log
    # in (a MariaDB `app@10.0.0.%` cannot); without one, the admin login says whether the server answers.
    for user in instance.spec.users:
        if user.host in SOCKET_HOSTS:
            dbname = user.databases[0] if user.databases else None
            return engine.probe(placement, user.name, user.password, timeout=2.0, dbname=dbname)
    password = admin if admin is not None else deps.admin_password(instance.id)
    return engine.probe(placement, engine.admin_user, password, timeout=2.0)


class CreateInstance:
    """BUILD -> a warm-pool server, or (none ready) allocate an address -> prepare -> initialise; then start
    (a cold server, or a retry) -> bootstrap -> root -> verify -> ACTIVE/HEALTHY."""

    def __init__(self, deps: ReconcilerDeps, warm_pool: PoolTarget | None = None) -> None:
        self.deps = deps
        self.pool = warm_pool or PoolTarget()

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            found = uow.instances.get_with_secrets(ctx.resource_id)
        if found is None:
            raise PermanentError(f"Instance {ctx.resource_id} no longer exists.")
        instance, owned = found
        if instance.deleting:
            return
        engine = deps.engine(instance)
        warm: StepResult = {}
        if instance.workload_id is not None:  # a warm-pool server taken when the create was recorded
            if instance.endpoint is None:
                raise PermanentError(f"Instance {instance.id} was given a pool server but holds no address.")
            warm = {"slot": instance.workload_id, "address": instance.endpoint.address,
                    "port": instance.endpoint.port}
        # None was ready then: one may be now. A create that started cold (its address is journaled) stays cold.
        elif "allocate_address" not in ctx.journal and not _copied(instance) and (
            self.pool.covers(instance.spec) or "claim" in ctx.journal
        ):
            warm = ctx.step("claim", lambda: pool.claim(deps, instance))
            if warm:  # the slot's admin password moved to the instance after `owned` was read
                with deps.db.unit_of_work(write=False) as uow:
                    owned = {**owned, **uow.secrets.of_owner(instance.id)}
        if warm:
            instance.workload_id = str(warm["slot"])
            endpoint = warm
        else:
            endpoint = ctx.step("allocate_address", lambda: allocate_address(
                deps, instance.id, engine.default_port, instance=True, offsets=engine.extra_port_offsets))
        instance.endpoint = Endpoint(str(endpoint["address"]), int(endpoint["port"]))
        placement = deps.placement(instance)
        restoring = instance.spec.restore_backup_id
        branching = instance.spec.branch_source_id or instance.spec.branch_snapshot_id
        if restoring is not None:
            # A restore streams its backup, unless the snapshot it was streamed from is kept here
            # (`services.instances`): decided once, journaled, so that a retry never switches paths.
            kept = instance.spec.branch_snapshot_id is not None and ctx.step("copy_from", lambda: {
                "snapshot": branch.snapshot_kept(deps, instance.spec.branch_snapshot_id)})["snapshot"]
            if not kept:
                branching = None
        replica = instance.spec.replica_source_id is not None
        if replica and "prepare" in ctx.journal:
            # Accepted by a release that seeded every replica over the network: it finishes that way.
            ctx.step("prepare", lambda: deps.runtime.prepare(placement, deps.resources(instance)))
            ctx.step("source_ready", lambda: replication.prepare_source(deps, instance))
            ctx.step("initialise", lambda: deps.runtime.initialise(placement, deps.workload(instance, placement)))
        elif replica:  # seeded from its primary, which is made ready for it first (its slot before any copy)
            ctx.step("source_ready", lambda: replication.prepare_source(deps, instance))
            ctx.step("reader_endpoint", lambda: self._reader_endpoint(instance))
            chosen = ctx.step("seed_from", lambda: seeding.seed_from(deps, instance))
            seeding.take_backup(ctx, deps, instance, chosen)
            ctx.step("seed", lambda: seeding.seed(deps, instance, placement, chosen))
        elif not warm and branching is not None:  # prepared by the branch itself, on the copy
            ctx.step("branch", lambda: branch.branch_volume(deps, instance, placement))
        elif not warm:
            ctx.step("prepare", lambda: deps.runtime.prepare(placement, deps.resources(instance)))
            if restoring is not None:
                ctx.step("restore", lambda: restore.restore_volume(deps, instance, placement))
            else:
                ctx.step("initialise", lambda: deps.runtime.initialise(placement, deps.workload(instance, placement)))
        admin = owned.get(ADMIN_SECRET)
        root_pending = ROOT_SECRET in owned
        if admin is None:
            raise PermanentError("The instance's admin credential is missing.")
        # A warm-pool server was answering when its build ended and the keeper checks it every health
        # interval, so the first attempt goes straight to bootstrap: a server that died meanwhile makes
        # bootstrap fail with a temporary error, and the retry starts it first.
        if restoring is not None or branching is not None:
            # The copied server knows its source's admin password until `adopt` rotates it to this one's.
            source = (branch.source_admin(deps, instance.id) if branching is not None
                      else restore.source_admin(deps, restoring) if restoring is not None else None)
            if source is None:
                raise PermanentError(f"Instance {instance.id} is neither a restore nor a branch.")
            start_server(ctx, deps, instance.spec, instance.id, placement, admin, alternate=source,
                         hold=RESTORE_START_HOLD)
            version = deps.version_for(instance.spec)
            ctx.step("adopt", lambda: engine.backups(version).adopt(placement, source, admin))
        elif not warm or ctx.op.attempts > 1 or "start" in ctx.journal:
            start_server(ctx, deps, instance.spec, instance.id, placement, admin)
        if not replica:  # a replica has its primary's accounts, and writes none
            ctx.step("bootstrap", lambda: engine.bootstrap(instance.spec, placement, admin))
        elif not self._carries_accounts(instance):  # Redis: they are copied from its primary
            ctx.step("accounts", lambda: replication.mirror_from_primary(deps, instance))
        # Root on create: only when the create stored a root password (`Settings.root_on_create`); the step
        # forgets it once root is enabled, so a re-run after that finds nothing to do.
        if root_pending or "root" in ctx.journal:
            ctx.step("root", lambda: self._root(instance, placement, admin))
        # The login goes first: it is over the unix socket, and it fails (quietly) until the server is up.
        ctx.wait_until(
            "verify",
            lambda: tenant_login(deps, instance, placement, admin) and endpoint_answers(deps, instance, placement),
            timeout=deps.ready_timeout,
            expired="The instance endpoint does not answer yet (or its address is held by another program).",
            # A server that died since it answered: the retry starts it again.
            rewind=("start", "answers", "answers.since"),
        )
        ctx.store_step("active", _record(
            instance, Observation.READY, "endpoint answers; instance is ready", clear_fault=True))
        if seeding.by_backup(ctx.journal.get("seed_from")):
            ctx.store_step("forget_seed", lambda uow: seeding.forget(uow, ctx.journal["seed_from"]))
        if restoring is not None and instance.spec.branch_source_id is not None:
            ctx.store_step("forget_backup", lambda uow: restore.forget_backup(uow, restoring, "for a branch"))

    def _reader_endpoint(self, replica: Instance) -> None:
        """The set's reader endpoint, allocated with its first replica (docs/failover.md)."""
        with self.deps.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(replica.id)
        if found is None:
            raise PermanentError(f"Instance {replica.id} is no longer a member of a replication set.")
        endpoints.ensure_reader(self.deps, found.id, self.deps.engine(replica).default_port)

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        _record_failure(self.deps, ctx, error)
        if seeding.by_backup(ctx.journal.get("seed_from")):
            with self.deps.db.unit_of_work() as uow:
                seeding.forget(uow, ctx.journal["seed_from"])

    def _carries_accounts(self, instance: Instance) -> bool:
        found = self.deps.engine(instance).replication(self.deps.version_for(instance.spec))
        return found is None or found.carries_accounts()

    def _root(self, instance: Instance, placement: Placement, admin: Secret) -> None:
        """Root on create: enable root with the password the create answered, record it, forget the password."""
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            password = uow.secrets.get(instance.id, ROOT_SECRET)
        if password is None:
            return
        accounts = deps.engine(instance).accounts(placement, admin)
        name = accounts.enable_root(password)
        with deps.db.unit_of_work() as uow:
            uow.instances.record_root_enabled(instance.id, instance.project_id)
            uow.secrets.delete(instance.id, ROOT_SECRET)
            uow.events.add(instance.id, "root", f"root ({name}) enabled on create")


class DeleteInstance:
    """Stop the server and remove every trace: process, files, volume, OS user, address, secrets."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            instance = uow.instances.get(ctx.resource_id, include_deleted=True)
            busy = uow.operations.live_leases(ctx.resource_id, exclude=ctx.op.id)
        if instance is None:
            return
        if busy:
            raise NotYet("waiting for a superseded operation to let go of the instance", delay=0.2)
        with deps.db.unit_of_work(write=False) as uow:
            held = uow.addresses.get(instance.id)
        placement = deps.runtime.placement(instance.runtime_id, *(held or ("", 0)))
        ctx.store_step("shutdown", _record(instance, Observation.DELETING, "deleting"))
        # A replica leaves its set first (services refuse to delete a primary that has replicas); once its
        # server is gone, its primary drops the slot it kept for it. Its primary is journaled before it
        # leaves: a retry after the leave finds no set to read it from.
        left: StepResult = {}
        if instance.replica_of is not None or "membership" in ctx.journal:
            left = ctx.step("membership", lambda: {"primary": instance.replica_of})
            ctx.step("leave_set", lambda: replication.leave(deps, instance))
            # No endpoint leads to it any more before its address can be given to another instance.
            ctx.step("routes", lambda: endpoints.publish(deps))
        elif "dissolve" in ctx.journal or _primary_of_a_set(deps, instance.id):
            # The primary of a set of one (its writer endpoint another address, see `replication.leave`).
            ctx.step("dissolve", lambda: replication.dissolve_alone(deps, instance.id))
            ctx.step("routes", lambda: endpoints.publish(deps))
        ctx.step("destroy", lambda: self._destroy(instance, placement))
        if left.get("primary"):
            ctx.store_step("release_slot", lambda uow: replication.ask_converge(uow, str(left["primary"]), instance.id))
        ctx.step("forget", lambda: self._forget(instance.id))

    def _destroy(self, instance: Instance, placement: Placement) -> None:
        """Everything of the instance on the host, and the WAL it archived to backup storage (its backups
        keep what they took of it: they outlive it)."""
        self.deps.runtime.destroy(placement)
        if self.deps.backups is not None:
            self.deps.backups.storage.delete_prefix(archive.archive_prefix(instance))

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        _record_failure(self.deps, ctx, error)

    def _forget(self, instance_id: str) -> None:
        with self.deps.db.unit_of_work() as uow:
            endpoints.keep_writer_address(uow, instance_id)
            uow.addresses.release(instance_id)
            uow.secrets.delete_owner(instance_id)
            uow.instances.mark_deleted(instance_id)
            uow.reservations.release(instance_id)  # its volume is gone: the host's storage is free again
            uow.archived_logs.forget(instance_id)
            seeding.forget_for(uow, instance_id)
            uow.events.add(instance_id, "DELETED", "instance deleted")


def _primary_of_a_set(deps: ReconcilerDeps, instance_id: str) -> bool:
    with deps.db.unit_of_work(write=False) as uow:
        return uow.replication.set_of(instance_id) is not None


class RestartInstance:
    """REBOOT: stop the server, start it again, ACTIVE once it answers."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        instance = _load(deps, ctx.resource_id)
        if instance.deleting:
            return
        placement = deps.placement(instance)
        ctx.store_step("mark", _record(instance, Observation.REBOOTING, "restart requested"))
        ctx.step("stop", lambda: deps.runtime.stop(placement, deps.workload(instance, placement)))
        start_server(ctx, deps, instance.spec, instance.id, placement)
        ctx.store_step("ready", _record(instance, Observation.READY, "restarted", clear_fault=True))

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        _record_failure(self.deps, ctx, error)


class RepairInstance:
    """A server found dead by the health sweep (or an admin reset): start it again and report."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        instance = _load(deps, ctx.resource_id)
        if instance.deleting or instance.endpoint is None:
            return
        placement = deps.placement(instance)
        if deps.runtime.observe(placement).volume_full:  # it would fail to start, again and again
            raise PermanentError(f"Instance {instance.id} is not restarted: its volume is full. Free space on it or "
                                 "give it a larger volume, then reset its status (reset_status) to have it started.")
        start_server(ctx, deps, instance.spec, instance.id, placement)
        ctx.store_step("ready", _record(
            instance, Observation.READY, "server restarted after it stopped", clear_fault=True))

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        _record_failure(self.deps, ctx, error)


def handlers(
    deps: ReconcilerDeps, warm_pool: PoolTarget | None = None
) -> dict[str, CreateInstance | DeleteInstance | RestartInstance | RepairInstance]:
    create = CreateInstance(deps, warm_pool)
    return {
        CREATE: create,
        RESTORE: create,
        Kind.REPLICA_CREATE: create,
        DELETE: DeleteInstance(deps),
        RESTART: RestartInstance(deps),
        REPAIR: RepairInstance(deps),
    }

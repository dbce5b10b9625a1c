"""The warm pool's operations, the keeper that sizes it, and the claim a create starts with.

See `reddwarf.domain.pool` and docs/warm-pool.md. A slot is an instance without a tenant: it is built by
the same runtime and engine calls as a cold create (allocate an address, prepare, initialise, start), under
the slot's own id, which becomes the claiming instance's runtime id (`Instance.workload_id`).

- `pool.build` (resource: a slot id): those steps, then `ready`. The slot owns its admin password (secret
  owner = slot id) and its address until an instance claims it.
- `pool.destroy` (resource: a slot id): removes everything the build made, then the row. A failed slot's
  row stays as a tombstone: the keeper does not build that profile again until it clears the tombstone
  `failure_pause` seconds later, so a broken engine is not rebuilt in a tight loop.
- `PoolKeeper`, a periodic task of every worker: per installed engine version, keeps `size` slots of the
  configured profile building or ready, and retires slots nobody wants any more (pool made smaller, version
  removed, profile changed).
- `claim()`: the first step of a create; one transaction moves a ready slot, its address and its admin
  password to the instance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass

from reddwarf.domain.capacity import GIB
from reddwarf.domain.errors import NotYet, PermanentError
from reddwarf.domain.instance import Endpoint, Instance, InstanceSpec
from reddwarf.domain.operations import Kind
from reddwarf.domain.pool import PoolProfile, PoolSlot, PoolTarget, SlotState, profile_of
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.store.records import OperationState
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import OperationContext, StepResult
from reddwarf.workflows.reconcilers.deps import ADMIN_SECRET, ReconcilerDeps
from reddwarf.workflows.reconcilers.lifecycle import allocate_address, start_server

log = logging.getLogger(__name__)

BUILD = Kind.POOL_BUILD
DESTROY = Kind.POOL_DESTROY
LIVE = frozenset({SlotState.BUILDING, SlotState.READY})


def wanted_profiles(deps: ReconcilerDeps, target: PoolTarget) -> dict[PoolProfile, int]:
    """The profiles the pool should hold, with their size: the target's, for every installed engine version."""
    if target.size <= 0 or target.flavor_id not in deps.flavors:
        return {}
    return {
        target.profile(name, version.name): target.size
        for name, engine in sorted(deps.engines.items())
        for version in engine.versions()
        if target.wants(name, version.name)
    }


def slot_spec(slot_id: str, profile: PoolProfile) -> InstanceSpec:
    """The spec a slot is built from: the profile, no databases, no users."""
    return InstanceSpec(
        name=f"pool-{slot_id}", flavor_id=profile.flavor_id, volume_size_gb=profile.volume_gb,
        datastore=profile.datastore, datastore_version=profile.version,
    )


def fingerprint(deps: ReconcilerDeps, slot: PoolSlot, placement: Placement) -> str:
    """What a slot's server is built from: the engine's full version and binaries, the server's command, its
    non-secret configuration files and its resources, hashed. A ready slot whose fingerprint no longer
    matches (flavor changed, engine updated, Reddwarf renders another configuration) is replaced."""
    spec = slot_spec(slot.id, slot.profile)
    version = deps.version_for(spec)
    workload = deps.workload_with(spec, placement, deps.admin_password(slot.id))
    material = {
        "version": [version.number, version.bin_dir],
        "server": [list(workload.server.argv), [list(pair) for pair in workload.server.env]],
        "files": [[f.path, f.content, f.mode] for f in workload.files if not (f.secret or f.fresh)],
        "resources": [workload.resources.memory_mb, workload.resources.vcpus, workload.resources.volume_gb],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def claim(deps: ReconcilerDeps, instance: Instance) -> StepResult:
    """Give the instance a ready slot of its profile: {"slot", "address", "port"}, or {} if there is none.

    Idempotent: a claim that committed before its worker died is found again on the instance."""
    with deps.db.unit_of_work() as uow:
        current = uow.instances.get(instance.id)
        if current is None:
            raise PermanentError(f"Instance {instance.id} no longer exists.")
        held = uow.addresses.get(instance.id)
        if current.workload_id is not None:
            if held is None:
                raise PermanentError(f"Instance {instance.id} was given a pool server but holds no address.")
            return {"slot": current.workload_id, "address": held[0], "port": held[1]}
        if held is not None:
            return {}  # an earlier run allocated an address (and crashed before journaling it): stay cold
        taken = uow.pool.take(profile_of(instance.spec), instance.id)
        if taken is None:
            return {}
        uow.instances.set_workload(instance.id, taken.slot_id)
        uow.instances.set_endpoint(instance.id, Endpoint(taken.address, taken.port))
        uow.events.add(instance.id, "BUILD", f"took a warm-pool server, {taken.address}:{taken.port}")
    log.info("instance %s claimed warm-pool slot %s", instance.id, taken.slot_id)
    return {"slot": taken.slot_id, "address": taken.address, "port": taken.port}


class BuildSlot:
    """pool.build: a server of the slot's profile, started and answering, then `ready`."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            slot = uow.pool.get(ctx.resource_id)
        if slot is None or slot.state not in LIVE:
            return  # retired or failed meanwhile: pool.destroy cleans up
        spec = slot_spec(slot.id, slot.profile)
        engine = deps.engine_for(spec)
        endpoint = ctx.step("allocate_address", lambda: allocate_address(
            deps, slot.id, engine.default_port, offsets=engine.extra_port_offsets))
        placement = deps.runtime.placement(slot.id, str(endpoint["address"]), int(endpoint["port"]))
        ctx.step("prepare", lambda: deps.runtime.prepare(placement, deps.resources_for(spec)))
        ctx.step("initialise", lambda: deps.runtime.initialise(placement, deps.workload_for(spec, slot.id, placement)))
        start_server(ctx, deps, spec, slot.id, placement)
        ctx.step("ready", lambda: self._ready(slot, placement))

    def _ready(self, slot: PoolSlot, placement: Placement) -> None:
        built_from = fingerprint(self.deps, slot, placement)
        with self.deps.db.unit_of_work() as uow:
            moved = uow.pool.mark(slot.id, SlotState.READY, only_from={SlotState.BUILDING}, fingerprint=built_from)
        if moved:
            log.info("warm-pool slot %s (%s) is ready", slot.id, slot.profile)

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        with self.deps.db.unit_of_work() as uow:
            if uow.pool.mark(ctx.resource_id, SlotState.FAILED, only_from=LIVE, error=error.message[:1000]):
                uow.operations.enqueue(DESTROY, ctx.resource_id)
        log.error("warm-pool slot %s failed to build: %s", ctx.resource_id, error.message)


class DestroySlot:
    """pool.destroy: remove the slot's server, files, volume, OS user, address and password. One that gives
    up is started again by the keeper (`PoolKeeper._finish_orphans`) until nothing of the slot is left."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            slot = uow.pool.get(ctx.resource_id)
            busy = uow.operations.live_leases(ctx.resource_id, exclude=ctx.op.id)
            held = uow.addresses.get(ctx.resource_id)
        # No row: forgotten already. A ready or building row is never destroyed: only a retired or failed
        # one, which `claim` cannot take any more.
        if slot is None or slot.state in LIVE:
            return
        if busy:
            raise NotYet("waiting for the slot's build to let go of it", delay=0.2)
        placement = deps.runtime.placement(slot.id, *(held or ("", 0)))
        ctx.step("destroy", lambda: deps.runtime.destroy(placement))
        ctx.step("forget", lambda: self._forget(slot))

    def _forget(self, slot: PoolSlot) -> None:
        with self.deps.db.unit_of_work() as uow:
            uow.addresses.release(slot.id)
            uow.secrets.delete_owner(slot.id)
            uow.reservations.release(slot.id)
            if slot.state is not SlotState.FAILED:  # a failed slot's row stays as the profile's tombstone
                uow.pool.remove(slot.id)
        log.info("warm-pool slot %s destroyed", slot.id)

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        log.error("warm-pool slot %s could not be destroyed: %s", ctx.resource_id, error.message)


@dataclass(frozen=True)
class Plan:
    add: tuple[PoolProfile, ...] = ()
    retire: tuple[str, ...] = ()
    clear: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.retire or self.clear)


def plan(slots: list[PoolSlot], wanted: dict[PoolProfile, int], moment: float, failure_pause: float) -> Plan:
    """What brings `slots` to `wanted`: profiles to build a slot of (once per missing slot), slots to retire,
    failed tombstones to clear. A profile with a tombstone gets nothing new until the tombstone is cleared."""
    live: dict[PoolProfile, list[PoolSlot]] = defaultdict(list)
    paused: set[PoolProfile] = set()
    clear = []
    for slot in slots:
        if slot.state in LIVE:
            live[slot.profile].append(slot)
        elif slot.state is SlotState.FAILED:
            if moment - slot.updated >= failure_pause:
                clear.append(slot.id)
            else:
                paused.add(slot.profile)
    add: list[PoolProfile] = []
    retire: list[str] = []
    for profile, have in live.items():
        keep = wanted.get(profile, 0)
        # Surplus: building slots go first (least work lost), then the newest ready ones.
        surplus = sorted(have, key=lambda s: (s.state is SlotState.READY, -s.created))[: max(0, len(have) - keep)]
        retire.extend(s.id for s in surplus)
    for profile, size in wanted.items():
        if profile not in paused:
            add.extend([profile] * max(0, size - len(live.get(profile, []))))
    return Plan(tuple(add), tuple(retire), tuple(clear))


class PoolKeeper:
    """Compares the pool with its target and enqueues builds and destroys; a periodic task of workers.

    Every `check_every` seconds it also looks at the ready slots' servers: one that stopped (killed, or the
    host rebooted) is retired and replaced rather than handed to a tenant, so a create never has to find
    out whether its server can still start."""

    def __init__(self, deps: ReconcilerDeps, target: PoolTarget, check_every: float = 5.0) -> None:
        self.deps = deps
        self.target = target
        self.check_every = check_every
        self._next_check = 0.0

    def __call__(self) -> None:
        wanted = wanted_profiles(self.deps, self.target)
        with self.deps.db.unit_of_work(write=False) as uow:
            slots = uow.pool.list()
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self.check_every
            self._check_ready([slot for slot in slots if slot.state is SlotState.READY])
            self._finish_orphans([slot for slot in slots if slot.state is not SlotState.READY])
        if not plan(slots, wanted, time.time(), self.target.failure_pause):
            return  # the usual case: nothing to write
        with self.deps.db.unit_of_work() as uow:
            uow.pool.serialise()
            todo = plan(uow.pool.list(), wanted, time.time(), self.target.failure_pause)
            self._apply(uow, todo)

    def _check_ready(self, ready: list[PoolSlot]) -> None:
        """A ready slot built from something that changed since (see `fingerprint`) is retired and rebuilt.
        A ready slot whose server stopped (killed, out of memory, host rebooted) fails like a build: it is
        destroyed, and its tombstone pauses the profile, so a server that keeps dying is not rebuilt in a
        loop nor handed to a tenant."""
        for slot in ready:
            with self.deps.db.unit_of_work(write=False) as uow:
                held = uow.addresses.get(slot.id)
            placement = self.deps.runtime.placement(slot.id, *(held or ("", 0)))
            if self._outdated(slot, placement):
                continue
            observation = self.deps.runtime.observe(placement)
            if observation.running:
                continue
            error = f"its server stopped while it waited in the pool: {observation.exit_reason}"
            with self.deps.db.unit_of_work() as uow:
                # Only from READY: a create that took the slot meanwhile starts the server itself.
                if uow.pool.mark(slot.id, SlotState.FAILED, only_from={SlotState.READY}, error=error[:1000]):
                    uow.operations.enqueue(DESTROY, slot.id)
                    log.warning("warm pool: slot %s %s; replacing it", slot.id, error)

    def _outdated(self, slot: PoolSlot, placement: Placement) -> bool:
        try:
            current = fingerprint(self.deps, slot, placement)
        except PermanentError as exc:  # the version was uninstalled, the flavor removed: the plan retires it
            log.info("warm pool: slot %s cannot be checked (%s)", slot.id, exc.message)
            return False
        if current == slot.fingerprint:
            return False
        with self.deps.db.unit_of_work() as uow:
            if uow.pool.mark(slot.id, SlotState.RETIRING, only_from={SlotState.READY}):
                uow.operations.enqueue(DESTROY, slot.id)
                log.info("warm pool: slot %s was built from an older configuration; replacing it", slot.id)
        return True

    def _finish_orphans(self, slots: list[PoolSlot]) -> None:
        """Slots no operation is working on any more: a build that ended without `ready` or `failed` (its
        failure could not be recorded) fails now; a retired or failed slot whose destroy gave up is
        destroyed again, after the failure pause, until nothing of it is left."""
        moment = time.time()
        for slot in slots:
            with self.deps.db.unit_of_work(write=False) as uow:
                if uow.operations.active_for(slot.id):
                    continue
                leftovers = uow.addresses.get(slot.id) is not None or bool(uow.secrets.names(slot.id))
                history = [op for op in uow.operations.history_for(slot.id) if op.kind == DESTROY]
            if slot.state is SlotState.BUILDING:
                with self.deps.db.unit_of_work() as uow:
                    if uow.pool.mark(slot.id, SlotState.FAILED, only_from={SlotState.BUILDING},
                                     error="its build ended without finishing"):
                        uow.operations.enqueue(DESTROY, slot.id)
                continue
            if not leftovers:
                continue
            gave_up = bool(history) and history[-1].state == OperationState.FAILED
            with self.deps.db.unit_of_work() as uow:
                uow.operations.enqueue(
                    DESTROY, slot.id, not_before=moment + self.target.failure_pause if gave_up else None
                )
            log.warning("warm pool: destroying slot %s again (%s)", slot.id, slot.error or slot.state.value)

    def _apply(self, uow: UnitOfWork, todo: Plan) -> None:
        storage_limit = self.deps.storage_limit() if todo.add else None
        for profile in todo.add:
            slot_id = uow.pool.add(profile)
            # A slot's volume reserves host storage like an instance's: no room, no slot (tenants come first).
            if not uow.reservations.reserve(slot_id, "pool_slot", profile.volume_gb * GIB, storage_limit):
                uow.pool.remove(slot_id)
                log.info("warm pool: no storage left for a %d GB slot of %s; not building it", profile.volume_gb,
                         profile)
                continue
            uow.secrets.put(slot_id, ADMIN_SECRET, Secret(secrets.token_urlsafe(24)))
            uow.operations.enqueue(BUILD, slot_id)
            log.info("warm pool: building slot %s for %s", slot_id, profile)
        for slot_id in todo.retire:
            if uow.pool.mark(slot_id, SlotState.RETIRING, only_from=LIVE):
                uow.operations.supersede(slot_id, [BUILD])
                uow.operations.enqueue(DESTROY, slot_id)
                log.info("warm pool: retiring slot %s", slot_id)
        for slot_id in todo.clear:
            # Only once its destroy has finished: nothing of it is left but the row.
            if not uow.operations.active_for(slot_id) and uow.addresses.get(slot_id) is None \
                    and not uow.secrets.names(slot_id):
                uow.pool.remove(slot_id)


def handlers(deps: ReconcilerDeps) -> dict[str, BuildSlot | DestroySlot]:
    return {BUILD: BuildSlot(deps), DESTROY: DestroySlot(deps)}

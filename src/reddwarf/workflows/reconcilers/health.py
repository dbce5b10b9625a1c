"""Health: observe every running instance, record what changed, enqueue a repair for a dead server.

`HealthSweep.check` observes one instance; `kernel.observer.Observer` runs it for every watched instance on
`Settings.health_interval`, a bounded number at once, in ONE process of those sharing the store (the one
holding the `health` lease), apart from the workers: a probe stuck on a hung server costs one observer
thread until its timeout, never a worker or another tenant's check. It never starts a server itself: it
enqueues `instance.reconcile`, which takes a lease like any operation.

Every instance is observed whatever operation runs on it, but the sweep writes status only while no
operation works on the instance (the operation owns its status then); a server found dead during an
operation gets an event, once, so that it is noticed. A server stopped by a signal (SIGSTOP: alive, but it
answers nothing) is seen from /proc without a probe and reported as not answering. The store is written
only on a change: an `Observation` on the conditions the sweep read, by compare-and-swap against the status
version it read (`domain.conditions`), so a stale view never overwrites a reconciler's newer status.

Health is a login-free protocol ping of the tenant endpoint whose listener must belong to the instance's OS
user (`endpoint_answers`): the sweep never sends a tenant's credential anywhere.

On an instance where root was ever enabled (its root history is not empty) the sweep also logs in as
Reddwarf's admin, over the instance's unix socket (its server checked to run as the instance's OS user): a
tenant with root can change or drop that account, and when the running server refuses it the instance gets
the fault `ADMIN_LOST` and operating_status ERROR instead of failing silently later. The fault is cleared
when the admin credential works again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reddwarf.domain.conditions import Observation, Reason, advance, derive, held_by_a_watcher
from reddwarf.domain.instance import Endpoint, Instance
from reddwarf.domain.operations import KINDS_BY_LANE, Lane
from reddwarf.domain.status import ConditionType, Fault, InstanceStatus, OperatingStatus
from reddwarf.domain.workload import Placement, ProcessObservation
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.instances import REPAIR, endpoint_answers

log = logging.getLogger(__name__)

WATCHED = frozenset({InstanceStatus.ACTIVE, InstanceStatus.SHUTDOWN})
# The smallest change of a volume's usage that the sweep writes (the API shows it in GB).
USAGE_STEP = 1024 * 1024
# Operations that stop and start the server themselves (the lifecycle lane): a server down during one of
# them is expected.
STARTS_AND_STOPS = KINDS_BY_LANE[Lane.LIFECYCLE]
VOLUME_FULL = "its volume is full"
ADMIN_LOST = (
    "Reddwarf's admin access to this instance was lost; root is enabled, so a root user may have changed "
    "or dropped it"
)


@dataclass(frozen=True, slots=True)
class _Round:
    """What one round read of the store for all its checks: which instances have an operation running (and
    the oldest one's kind), and on which root was ever enabled."""

    busy: Mapping[str, str]
    root: frozenset[str]


class HealthSweep:
    """Checks one instance at a time (`check`); `watched()` lists the instances of a round and reads, in one
    transaction, what their checks need from the store.

    Cost at rest, per instance and round: the runtime's observation (for a server the local runtime watches
    by pidfd, one read of its /proc stat; its slow part every 30 s) and no store access. A server's exit
    reaches `server_exited` from the runtime at once, which wakes the instance in the observer (`wake`).
    The login-free ping of the endpoint runs every `ping_every` seconds,
    the admin login (only where root was ever enabled) every `admin_every` seconds; in between a check
    reuses their last answer. The store is written only on a change."""

    def __init__(
        self, deps: ReconcilerDeps, *, ping_every: float = 0.0, admin_every: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deps = deps
        self.ping_every = ping_every
        self.admin_every = admin_every
        self._clock = clock
        self._round: _Round | None = None
        # The last list of watched instances, and the store's instance fingerprint it was read at.
        self._listed: tuple[tuple[int, int, float | None], list[tuple[str, Instance]]] | None = None
        self._pinged: dict[str, tuple[float, bool]] = {}
        self._admin_checked: dict[str, tuple[float, bool]] = {}
        self._placements: dict[str, tuple[Endpoint | None, Placement]] = {}
        # The runtime names a server by its placement's id (a warm-pool slot's, for an adopted one): which
        # instance that is, and what to call to have it looked at now (the observer's `wake`).
        self._by_runtime_id: dict[str, str] = {}
        self.wake: Callable[[str], None] | None = None
        # Instances whose server was seen dead during an operation, already told (an event once, not per pass).
        self._told: set[str] = set()

    def __call__(self) -> None:
        """Check every watched instance, one after the other (tests; the observer runs them concurrently)."""
        try:
            for _key, instance in self.watched():
                try:
                    self.check(instance)
                except Exception:  # loop boundary: one broken instance must not stop the sweep
                    log.exception("health check of instance %s failed", instance.id)
        finally:
            self._round = None  # a check called on its own reads the store again

    def _swap(
        self, uow: UnitOfWork, seen: Instance, observation: Observation, message: str,
        volume_used_bytes: int | None, *, fault: Fault | None = None, clear_fault: bool = False,
    ) -> tuple[InstanceStatus, OperatingStatus] | None:
        """Record `observation` on the conditions the sweep read, by compare-and-swap against the status version
        it read: the derived statuses, or None when another writer got there first (the sweep's view is stale:
        the next round lists the instances afresh and looks again; it never overwrites a reconciler's newer
        status)."""
        conditions = advance(seen.conditions, observation, message, time.time())
        if not uow.instances.transition(
            seen.id, seen.status_version, conditions, observed_generation=seen.generation,
            fault=fault, clear_fault=clear_fault, volume_used_bytes=volume_used_bytes,
        ):
            self._listed = None
            return None
        return derive(conditions)

    def watched(self) -> list[tuple[str, Instance]]:
        """The instances to observe, keyed by id: running or stopped ones with an endpoint, not being deleted."""
        with self.deps.db.unit_of_work(write=False) as uow:
            fingerprint = uow.instances.fingerprint()
            if self._listed is None or self._listed[0] != fingerprint:
                self._listed = (fingerprint, [
                    (i.id, i) for i in uow.instances.list(None)
                    if i.status in WATCHED and not i.deleting and i.endpoint is not None
                ])
            watched = self._listed[1]
            self._round = _Round(busy=uow.operations.active_kinds(), root=frozenset(uow.instances.with_root_history()))
        ids = {key for key, _ in watched}
        for cache in (self._pinged, self._admin_checked, self._placements):
            for gone in set(cache) - ids:
                cache.pop(gone, None)
        for runtime_id, instance_id in list(self._by_runtime_id.items()):
            if instance_id not in ids:
                self._by_runtime_id.pop(runtime_id, None)
        return watched

    def check(self, instance: Instance) -> None:
        """Observe one instance and record what changed (`first_look`, then its follow-up if any)."""
        follow_up = self.first_look(instance)
        if follow_up is not None:
            follow_up()

    def first_look(self, instance: Instance) -> Callable[[], None] | None:
        """What costs nothing and never blocks: the runtime's observation and this round's store view. Returns
        the rest of the check (a ping, an admin login, a store write) when one is due or something changed,
        else None: at rest most looks end here, in the observer's own thread."""
        placement = self._placement(instance)
        observation = self.deps.runtime.observe(placement)
        busy, root = self._store_view(instance.id)
        if busy is not None:
            if observation.running or busy in STARTS_AND_STOPS or instance.id in self._told:
                return None
            return lambda: self._during(instance, busy, observation.exit_reason)
        self._told.discard(instance.id)
        if not observation.running:
            return lambda: self._record_dead(instance, observation)
        if observation.stopped:
            if (instance.operating_status is OperatingStatus.ERROR
                    and not _usage_moved(observation.volume_used_bytes, instance.volume_used_bytes)):
                return None
            return lambda: self._record_operating(instance, OperatingStatus.ERROR, observation.volume_used_bytes,
                                                  "server is stopped (suspended by a signal) and answers nothing")
        if self._settled(instance, observation, root):
            return None
        return lambda: self._judge(instance, placement, observation, root)

    def _placement(self, instance: Instance) -> Placement:
        endpoint = instance.endpoint
        cached = self._placements.get(instance.id)
        if cached is not None and cached[0] == endpoint:
            return cached[1]
        placement = self.deps.placement(instance)
        self._placements[instance.id] = (endpoint, placement)
        self._by_runtime_id[placement.instance_id] = instance.id
        return placement

    def server_exited(self, runtime_id: str) -> None:
        """The runtime saw the server of `runtime_id` exit (from its thread): have its instance looked at now."""
        instance_id = self._by_runtime_id.get(runtime_id)
        wake = self.wake
        if instance_id is not None and wake is not None:
            wake(instance_id)

    def _settled(self, instance: Instance, observation: ProcessObservation, root: bool) -> bool:
        """No ping or admin login is due and their last answers change nothing of what the store says."""
        now = self._clock()
        pinged = self._pinged.get(instance.id)
        if pinged is None or now - pinged[0] >= self.ping_every:
            return False
        lost_before = _admin_lost_recorded(instance)
        if root:
            checked = self._admin_checked.get(instance.id)
            if checked is None or now - checked[0] >= self.admin_every:
                return False
            if checked[1]:  # still lost: settled once the store says so
                return lost_before and instance.operating_status is OperatingStatus.ERROR
        if _volume_changed(instance, observation):
            return False
        operating = _operating(instance, pinged[1])
        return (not lost_before and operating == instance.operating_status
                and not _usage_moved(observation.volume_used_bytes, instance.volume_used_bytes))

    def _record_dead(self, instance: Instance, observation: ProcessObservation) -> None:
        """A dead server gets a repair; one whose volume is full does not (it would fail to start again and
        again: it is Degraded, saying so, until its volume has room, and then repaired)."""
        deps = self.deps
        message = f"server not running: {observation.exit_reason}"
        full = observation.volume_full
        if full:
            message += f"; {VOLUME_FULL}: it is not restarted until the volume has room"
            if advance(instance.conditions, Observation.SERVER_DOWN, message, time.time()) == instance.conditions:
                return  # said already: no write, no event, round after round
        with deps.db.unit_of_work() as uow:
            if not _unchanged(uow, instance):
                return
            recorded = self._swap(uow, instance, Observation.SERVER_DOWN, message, observation.volume_used_bytes)
            if recorded is None:
                return
            uow.events.add(instance.id, recorded[0].value, message)
            if not full:
                uow.operations.enqueue(REPAIR, instance.id)
        log.warning("instance %s: %s%s", instance.id, message, "" if full else "; repair enqueued")

    def _judge(self, instance: Instance, placement: Placement, observation: ProcessObservation, root: bool) -> None:
        """The endpoint's ping and, where root was ever enabled, the admin's login; record what changed."""
        deps = self.deps
        healthy = self._answers(instance, placement)
        if root and self._admin_lost(instance, placement):
            self._record_admin_lost(instance, observation.volume_used_bytes)
            return
        if _volume_changed(instance, observation):
            self._record_volume(instance, observation)
            return
        admin_back = _admin_lost_recorded(instance)
        operating = _operating(instance, healthy)
        changed = (operating != instance.operating_status
                   or _usage_moved(observation.volume_used_bytes, instance.volume_used_bytes))
        if not (changed or admin_back):
            return
        observed = Observation.ENDPOINT_ANSWERS if healthy else Observation.ENDPOINT_SILENT
        message = "endpoint answers" if healthy else "endpoint does not answer"
        with deps.db.unit_of_work() as uow:
            if not _unchanged(uow, instance):
                return
            recorded = self._swap(
                uow, instance, observed, message, observation.volume_used_bytes, clear_fault=admin_back)
            if recorded is None:
                return
            operating = recorded[1]
            if admin_back:
                uow.events.add(instance.id, "admin", "Reddwarf's admin access works again")
            if operating != instance.operating_status:
                uow.events.add(instance.id, operating.value or "UNKNOWN", message)
        if admin_back:
            log.info("instance %s: admin access works again; fault cleared", instance.id)

    def _record_volume(self, instance: Instance, observation: ProcessObservation) -> None:
        """A running server's volume found full (Degraded, with an event), or with room again."""
        full = observation.volume_full
        observed, message = (Observation.VOLUME_ROOM, "its volume has room again")
        if full:
            observed, message = (Observation.VOLUME_FULL,
                                 f"{VOLUME_FULL}: writes fail until it has room (free space or a larger volume)")
        with self.deps.db.unit_of_work() as uow:
            if not _unchanged(uow, instance):
                return
            if self._swap(uow, instance, observed, message, observation.volume_used_bytes) is None:
                return
            uow.events.add(instance.id, "volume", message)
        log.warning("instance %s: %s", instance.id, message)

    def _store_view(self, instance_id: str) -> tuple[str | None, bool]:
        """The kind of the operation working on the instance (None: none), and whether root was ever enabled:
        from this round's read, or (a check outside a round) from the store."""
        current = self._round
        if current is not None:
            return current.busy.get(instance_id), instance_id in current.root
        with self.deps.db.unit_of_work(write=False) as uow:
            busy = uow.operations.active_for(instance_id)
            root = bool(uow.instances.root_history(instance_id))
        return (busy[0].kind if busy else None), root

    def _answers(self, instance: Instance, placement: Placement) -> bool:
        """The endpoint's login-free ping, at most every `ping_every` seconds (its last answer in between)."""
        now = self._clock()
        last = self._pinged.get(instance.id)
        if last is not None and now - last[0] < self.ping_every:
            return last[1]
        answered = endpoint_answers(self.deps, instance, placement)
        self._pinged[instance.id] = (now, answered)
        return answered

    def _during(self, instance: Instance, kind: str, reason: str) -> None:
        """An operation that does not stop and start the server works on the instance and its server is dead:
        say so once (`first_look` decided it is due), write no status."""
        self._told.add(instance.id)
        with self.deps.db.unit_of_work() as uow:
            uow.events.add(instance.id, "health", f"server not running during {kind}: {reason}")
        log.warning("instance %s: server not running during %s (%s)", instance.id, kind, reason)

    def _record_operating(
        self, instance: Instance, operating: OperatingStatus, volume_used_bytes: int | None, message: str
    ) -> None:
        if operating == instance.operating_status and not _usage_moved(volume_used_bytes, instance.volume_used_bytes):
            return
        with self.deps.db.unit_of_work() as uow:
            if not _unchanged(uow, instance):
                return
            if self._swap(uow, instance, Observation.SERVER_SUSPENDED, message, volume_used_bytes) is None:
                return
            if operating != instance.operating_status:
                uow.events.add(instance.id, operating.value or "UNKNOWN", message)
        log.warning("instance %s: %s", instance.id, message)

    def _admin_lost(self, instance: Instance, placement: Placement) -> bool:
        """The running server refuses Reddwarf's admin credential (asked at most every `admin_every` s)."""
        now = self._clock()
        last = self._admin_checked.get(instance.id)
        if last is not None and now - last[0] < self.admin_every:
            return last[1]
        deps = self.deps
        engine = deps.engine(instance)
        lost = not engine.probe(placement, engine.admin_user, deps.admin_password(instance.id), timeout=2.0)
        self._admin_checked[instance.id] = (now, lost)
        return lost

    def _record_admin_lost(self, instance: Instance, volume_used_bytes: int | None) -> None:
        known = _admin_lost_recorded(instance)
        if known and instance.operating_status is OperatingStatus.ERROR:
            return
        with self.deps.db.unit_of_work() as uow:
            if not _unchanged(uow, instance):
                return
            fault = None if known else Fault(message=ADMIN_LOST, details="", created=time.time())
            if self._swap(uow, instance, Observation.ADMIN_LOST, ADMIN_LOST, volume_used_bytes, fault=fault) is None:
                return
            uow.events.add(instance.id, OperatingStatus.ERROR.value, ADMIN_LOST)
        log.warning("instance %s: %s", instance.id, ADMIN_LOST)


def _operating(instance: Instance, answers: bool) -> OperatingStatus:
    """The operating status a ping's answer gives: ERROR while a watcher holds the instance Degraded."""
    return OperatingStatus.HEALTHY if answers and not held_by_a_watcher(instance.conditions) else OperatingStatus.ERROR


def _usage_moved(observed: int | None, stored: int | None) -> bool:
    """Whether the volume's usage moved enough to be written: by `USAGE_STEP` or more. An idle PostgreSQL
    writes and removes its statistics files all the time: recording each few-kilobyte wobble would write
    the store every few seconds at rest (and make every reader of the instances list again)."""
    if observed is None or stored is None:
        return observed != stored
    return abs(observed - stored) >= USAGE_STEP


def _unchanged(uow: UnitOfWork, seen: Instance) -> bool:
    """Guard of the sweep's writes: the instance is not being deleted and no operation is working on it now
    (the operation owns its status then). That nothing wrote its status since the sweep read it is the
    compare-and-swap's part (`_swap`)."""
    current = uow.instances.get(seen.id)
    return current is not None and not current.deleting and not uow.operations.active_for(seen.id)


def _volume_changed(instance: Instance, observation: ProcessObservation) -> bool:
    """The volume found full where the store does not say so, or with room (twice the margin: no flapping at
    the threshold) where it does."""
    recorded = _full_recorded(instance)
    return (observation.volume_full and not recorded) or (recorded and observation.volume_roomy)


def _full_recorded(instance: Instance) -> bool:
    """The instance is Degraded because its volume is full."""
    degraded = {c.type: c for c in instance.conditions}.get(ConditionType.DEGRADED)
    return degraded is not None and degraded.status and degraded.reason == Reason.VOLUME_FULL


def _admin_lost_recorded(instance: Instance) -> bool:
    """The instance carries the fault that says Reddwarf's admin access was lost."""
    return instance.fault is not None and instance.fault.message == ADMIN_LOST

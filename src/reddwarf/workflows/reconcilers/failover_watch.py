"""The failover watch (docs/failover.md): the primary of every set that fails over by itself, looked at every
`Settings.failover_check_interval` seconds, in ONE process of those sharing the store (the store lease
`failover`, `kernel.observer`), which is thus the only one that decides a set's failover.

A look finds the primary failing when its server is not running (its repair has not brought it back), is
stopped by a signal (only its postmaster, say), or does not answer a login-free ping within
`failover_ping_timeout` (a frozen cgroup: the kernel still completes the TCP handshake, so only an answer of
the server counts; "too many connections" is an answer: anyone on the host can fill a server's slots, and
that must not fail a healthy primary over). A primary failing on every look for `failover_grace` seconds is
failed over: in one transaction the set is read again (still this primary, still automatic, no automatic failover within
`failover_quiet` seconds, a replica ACTIVE to take its place, no switchover or eject under way), its repair and
restart are superseded, an `instance.replica.eject` is recorded with what was seen (`EjectPayload.automatic`),
every member shows EJECT, and the set remembers when. The eject (`reconcilers.failover`) does the rest,
durably: a process killed half-way leaves a journal the next worker finishes.

Planned stops are not failures: a primary with an operation of the lifecycle lane under way other than its
repair (a restart; later a resize or an upgrade) is not looked at, and its clock starts again afterwards.
The clock is this process's memory: a process that takes the lease over starts every clock afresh (a
failover a little later, never an early one). A server's exit, which the runtime sees at once, has its primary
looked at at once; a primary found failing is looked at again exactly when its grace ends. So the time from
the fault to the decision is the grace plus, for a server that is alive but hung, at most one interval and one
ping's timeout.

Each round also keeps the endpoint table in line with the store (`reconcilers.endpoints`): a set whose primary
is being replaced has its writer endpoint held (refusing) in the store until the new primary takes writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reddwarf.domain.conditions import Observation
from reddwarf.domain.endpoints import Route
from reddwarf.domain.errors import TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.operations import KINDS_BY_LANE, REGISTRY, EjectPayload, Kind, Lane
from reddwarf.domain.replication import Mode, ReplicationSet, SyncState
from reddwarf.domain.status import InstanceStatus
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.reconcilers import endpoints
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.sync_keeper import SyncKeeper

log = logging.getLogger(__name__)

# Operations on any member during which the set is not failed over (one role change at a time).
ROLE_CHANGES = frozenset({Kind.REPLICA_PROMOTE, Kind.REPLICA_EJECT, Kind.REPLICA_DETACH})
# Operations on the primary that stop it on purpose.
PLANNED = frozenset(KINDS_BY_LANE[Lane.LIFECYCLE]) - {Kind.INSTANCE_REPAIR}


@dataclass(frozen=True, slots=True)
class Watched:
    """A set that fails over by itself, as this round read it."""

    found: ReplicationSet
    primary: Instance


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    grace: float = 2.0
    ping_timeout: float = 0.5
    quiet: float = 300.0


class FailoverWatch:
    def __init__(self, deps: ReconcilerDeps, policy: FailoverPolicy,
                 clock: Callable[[], float] = time.monotonic, sync: SyncKeeper | None = None) -> None:
        self.deps = deps
        self.policy = policy
        # Keeps each set in synchronous mode where the store says it stands, while its primary answers.
        self.sync = sync
        self._clock = clock
        # Per primary: since when every look found it failing, and what the last look saw.
        self._failing: dict[str, tuple[float, str]] = {}
        # Per set: the refusal last said (an event once, not every round).
        self._said: dict[str, str] = {}
        self._published: tuple[float, list[Route]] | None = None
        # What to call to have a primary looked at now (the observer's `wake`), and which primary each runtime
        # id is (a server's exit, seen by the runtime at once, wakes its primary's look).
        self.wake: Callable[[str], None] | None = None
        self._by_runtime_id: dict[str, str] = {}
        self._timers: dict[str, threading.Timer] = {}

    def watched(self) -> list[tuple[str, Watched]]:
        """The round's sets (keyed by primary), read in one transaction; the endpoint table brought in line."""
        with self.deps.db.unit_of_work(write=False) as uow:
            sets = uow.replication.all_sets()  # read once a round: for the routes and for the looks
            routes = endpoints.routes_of(uow, sets)
            items: list[tuple[str, Watched]] = []
            for found in sets:
                # Synchronous sets are kept (`SyncKeeper`) whatever their replicas; others watched with a replica.
                if found.policy.mode is not Mode.SYNC and not (found.policy.auto_failover and found.replica_ids):
                    continue
                primary = uow.instances.get(found.primary_id)
                if primary is None or primary.deleting or primary.endpoint is None:
                    continue
                items.append((primary.id, Watched(found, primary)))
        self._publish(routes)
        keys = {key for key, _ in items}
        for gone in set(self._failing) - keys:
            self._failing.pop(gone, None)
        self._by_runtime_id = {watched.primary.runtime_id: key for key, watched in items}
        return items

    def server_exited(self, runtime_id: str) -> None:
        """The runtime saw a server exit (from its thread): if it is a watched primary, look at it now."""
        primary_id = self._by_runtime_id.get(runtime_id)
        if primary_id is not None and self.wake is not None:
            self.wake(primary_id)

    def _look_again_at(self, primary_id: str, delay: float) -> None:
        """Have the primary looked at once more when its grace ends, not at the round after."""
        wake = self.wake
        if wake is None or primary_id in self._timers:
            return

        def fire() -> None:
            self._timers.pop(primary_id, None)
            wake(primary_id)

        timer = threading.Timer(max(0.0, delay), fire)
        timer.daemon = True
        self._timers[primary_id] = timer
        timer.start()

    def _publish(self, routes: list[Route]) -> None:
        now = self._clock()
        last = self._published
        if last is not None and sorted(last[1]) == sorted(routes) and now - last[0] < endpoints.REPUBLISH_EVERY:
            return
        try:
            endpoints.publish(self.deps)
        except TemporaryError as exc:
            log.error("the endpoint table could not be written: %s", exc.message)
            return
        self._published = (now, routes)

    def first_look(self, watched: Watched) -> Callable[[], None] | None:
        return lambda: self.look(watched)

    def look(self, watched: Watched) -> None:
        """Judge the primary now; fail its set over once it has failed every look for the grace."""
        primary = watched.primary
        with self.deps.db.unit_of_work(write=False) as uow:
            if self._busy(uow, watched.found) is not None:
                self._failing.pop(primary.id, None)
                return
        failing = self._failing_now(primary)
        if failing is None:
            if self._failing.pop(primary.id, None) is not None:
                log.info("failover watch: primary %s answers again", primary.id)
            if self.sync is not None:
                self.sync.keep(watched.found, primary)
            return
        if not watched.found.policy.auto_failover or not watched.found.replica_ids:
            return
        now = self._clock()
        since, _ = self._failing.get(primary.id, (now, failing))
        self._failing[primary.id] = (since, failing)
        if since == now:
            log.warning("failover watch: primary %s is failing (%s); grace %.1f s", primary.id, failing,
                        self.policy.grace)
        if now - since >= self.policy.grace:
            self._fail_over(watched, failing, now - since)
        else:
            self._look_again_at(primary.id, since + self.policy.grace - now)

    def _failing_now(self, primary: Instance) -> str | None:
        """What is wrong with the primary now (None: nothing)."""
        deps = self.deps
        placement = deps.placement(primary)
        seen = deps.runtime.observe(placement)
        if not seen.running:
            return f"its server is not running ({seen.exit_reason})"
        if seen.stopped:
            return "its server is stopped by a signal"
        if not deps.engine(primary).ping(placement, timeout=self.policy.ping_timeout, busy_is_alive=True):
            return f"its server does not answer within {self.policy.ping_timeout:g} s"
        return None

    @staticmethod
    def _busy(uow: UnitOfWork, found: ReplicationSet) -> str | None:
        """The operation that keeps the set from failing over now, if any."""
        for member in found.members:
            for op in uow.operations.active_for(member.instance_id):
                if op.kind in ROLE_CHANGES or (member.instance_id == found.primary_id and op.kind in PLANNED):
                    return op.kind
        return None

    def _fail_over(self, watched: Watched, failing: str, lasted: float) -> None:
        found, primary = watched.found, watched.primary
        reason = f"{failing}, for {lasted:.1f} s"
        try:
            with self.deps.db.unit_of_work() as uow:
                refusal = self._decide(uow, found.id, primary.id, reason, lasted)
        except TemporaryError as exc:  # a status changing under it: the next round decides again
            log.info("failover of set %s put off: %s", found.id, exc.message)
            return
        if refusal is None:
            self._failing.pop(primary.id, None)
            self._said.pop(found.id, None)
            log.warning("automatic failover of set %s: primary %s %s", found.id, primary.id, reason)
        elif self._said.get(found.id) != refusal:
            self._said[found.id] = refusal
            log.warning("set %s is not failed over: %s", found.id, refusal)
            with self.deps.db.unit_of_work() as uow:
                uow.events.add(primary.id, "failover", f"not failed over although {reason}: {refusal}")

    def _decide(self, uow: UnitOfWork, set_id: str, primary_id: str, reason: str, lasted: float) -> str | None:
        """Record the failover, or say why not (nothing written then)."""
        found = uow.replication.get(set_id)
        if found is None or found.primary_id != primary_id or not found.policy.auto_failover:
            return "its set changed meanwhile"
        busy = self._busy(uow, found)
        if busy is not None:
            return f"an operation ({busy}) is under way on its set"
        if found.policy.mode is Mode.SYNC and found.sync is not SyncState.SYNC:
            return (f"it is in synchronous mode but {_NOT_SYNC[found.sync]}: a replica promoted now could lack "
                    "commits it acknowledged")
        if found.failed_over is not None and time.time() - found.failed_over < self.policy.quiet:
            return (f"it failed over by itself {time.time() - found.failed_over:.0f} s ago, within the "
                    f"{self.policy.quiet:g} s it waits between two")
        members = {m.instance_id: uow.instances.get(m.instance_id) for m in found.members}
        failing_since = time.time() - lasted
        ready = [r for r in found.replica_ids if _can_take_over(members.get(r), found, failing_since)]
        if not ready:
            return ("none of its replicas is ACTIVE and was streaming when it began to fail (a replica that had "
                    "stopped would lose what the primary wrote since)")
        full = self._full_volumes([members[primary_id], *(members[r] for r in ready)])
        if primary_id in full and full & set(ready):
            return ("its volume is full, and a replica that could take its place has a volume as full: a failover "
                    "would move the outage, not end it (give the volumes room)")
        uow.operations.supersede(primary_id, REGISTRY[Kind.REPLICA_EJECT].supersedes)
        payload = EjectPayload(automatic=True, reason=reason)
        uow.operations.enqueue(Kind.REPLICA_EJECT, primary_id, payload.model_dump())
        uow.replication.failed_over(set_id, time.time())
        message = f"automatic failover: primary {primary_id} {reason}; a replica takes its place"
        for member in members.values():
            if member is not None and not member.deleting:
                uow.instances.record(member.id, Observation.EJECTING, message, generation=member.generation)
                uow.events.add(member.id, "failover", message)
        return None


    def _full_volumes(self, instances: list[Instance | None]) -> set[str]:
        """Those of `instances` whose volume the runtime sees full now."""
        deps = self.deps
        return {i.id for i in instances
                if i is not None and i.endpoint is not None and deps.runtime.observe(deps.placement(i)).volume_full}


_NOT_SYNC = {
    SyncState.ASYNC: "its commits do not wait for a replica now (none has been synchronous since it began, or its "
                     "durability is available and none could acknowledge)",
    SyncState.RESYNCING: "no replica is known yet to hold every commit it acknowledged",
}

# How long before the primary began to fail a replica's last "not streaming" may have been seen and still be
# blamed on the failure (the replication watch asks the primary, which may already have been failing).
_HEALTH_SLACK = 1.0


def _can_take_over(replica: Instance | None, found: ReplicationSet, failing_since: float) -> bool:
    """ACTIVE, not fenced, and streaming when last seen before the primary began to fail (a replica that had
    stopped following long before would lose everything the primary wrote since)."""
    if replica is None or replica.deleting or replica.status is not InstanceStatus.ACTIVE:
        return False
    member = found.member(replica.id)
    if member is None or member.fenced is not None or member.health is None:
        return False
    return member.health.state.streaming or member.health.observed >= failing_since - _HEALTH_SLACK

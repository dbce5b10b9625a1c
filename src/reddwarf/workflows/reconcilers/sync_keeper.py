"""Synchronous mode kept where the store says it stands (docs/failover.md, "Synchronous mode").

A set in synchronous mode is in one `SyncState` at a time, recorded in the store and rendered into its
primary's configuration (`Topology.synchronous`: the replicas one of which each commit waits for, or none):

- ASYNC -> RESYNCING once a replica streams and is close behind (`SyncReading.caught_up`): recorded, then the
  primary's configuration rewritten and loaded (commits wait from then on).
- RESYNCING -> SYNC once a replica that acknowledges commits has flushed the primary's log up to where it was
  when its commits began to wait (`mark`): everything acknowledged asynchronously before is on it, everything
  after waited for one. Only then does a failover lose nothing, so only then does the set fail over by itself.
- SYNC or RESYNCING -> ASYNC, for a set whose durability is AVAILABLE, once no replica has streamed for
  `fallback_after` seconds: recorded FIRST, then the configuration loaded (the commits waiting are released).
  So no commit is acknowledged without a replica while the store still says the set is synchronous. A STRICT
  set never drops: its commits wait, and its primary's view says why.

A promotion moves a SYNC set to RESYNCING (STRICT: the new primary's replicas are yet to prove they follow it)
or ASYNC (AVAILABLE: its writes must not wait for replicas that may never come), in the same transaction as the
roles (`ReplicationRepository.promote`).

The keeper runs in the failover watch's process (the `failover` lease: one decision at a time), at most every
`check_every` seconds per set, while its primary answers. Its memory (since when no replica streams, each
set's mark) is this process's: a process that takes over starts them afresh (a later drop, never an early one).
The server is brought in line with the store on every check: a reload that failed is done again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from reddwarf.domain.conditions import Observation, Reason
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.replication import Durability, Mode, ReplicationSet, SyncReading, SyncState, slot_name
from reddwarf.domain.status import ConditionType
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    check_every: float = 1.0
    fallback_after: float = 2.0


# What a set's memory in the keeper belongs to: its primary and where it stood, as recorded. A promotion or a
# move by anyone starts the memory afresh (a mark read on a former primary means nothing for the new one).
_Epoch = tuple[str, SyncState, float | None]


class SyncKeeper:
    def __init__(
        self, deps: ReconcilerDeps, policy: SyncPolicy, clock: Callable[[], float] = time.monotonic, *,
        read: Callable[[ReplicationSet, Instance], SyncReading] | None = None,
        apply: Callable[[str], None] | None = None,
    ) -> None:
        """`read` (the primary's `SyncReading`) and `apply` (the primary's configuration rewritten from the set as
        the store says now, and loaded: `apply_sync`) default to the engine's."""
        self.deps = deps
        self.policy = policy
        self._clock = clock
        self._read = read or self._reading
        self._apply = apply or (lambda set_id: apply_sync(deps, set_id))
        self._checked: dict[str, float] = {}
        self._epochs: dict[str, _Epoch] = {}
        self._alone_since: dict[str, float] = {}
        # The mark: None once the server was first seen waiting, the position at the check after (by then every
        # commit's wait goes through the list: the checkpointer has passed the reload on).
        self._marks: dict[str, int | None] = {}
        # The furthest flush of a synchronous replica last seen, and when it was first seen there.
        self._progress: dict[str, tuple[int | None, float]] = {}

    def keep(self, found: ReplicationSet, primary: Instance) -> None:
        """One check of `found` (as the round read it), whose primary answers; never raises."""
        if found.policy.mode is not Mode.SYNC:
            self._forget(found.id)
            self._say(primary, waiting=False)
            return
        now = self._clock()
        if now - self._checked.get(found.id, float("-inf")) < self.policy.check_every:
            return
        self._checked[found.id] = now
        epoch = (found.primary_id, found.sync, found.sync_changed)
        if self._epochs.get(found.id) != epoch:
            self._forget(found.id, keep_checked=True)
            self._epochs[found.id] = epoch
        try:
            self._keep(found, primary, now)
        except (TemporaryError, PermanentError) as exc:
            log.info("synchronous mode of set %s not checked now: %s", found.id, exc.message)

    def _forget(self, set_id: str, keep_checked: bool = False) -> None:
        for memory in (self._epochs, self._alone_since, self._marks, self._progress):
            memory.pop(set_id, None)
        if not keep_checked:
            self._checked.pop(set_id, None)

    def _reading(self, found: ReplicationSet, primary: Instance) -> SyncReading:
        deps = self.deps
        replication = deps.engine(primary).replication(deps.version_for(primary.spec))
        if replication is None:
            raise PermanentError(f"{primary.spec.datastore} has no replication")
        with deps.db.unit_of_work(write=False) as uow:
            replicas = {r: uow.instances.get(r) for r in found.replica_ids}
        placements = {slot_name(r): deps.placement(replica) for r, replica in replicas.items()
                      if replica is not None and replica.endpoint is not None and not replica.deleting}
        return replication.sync_reading(deps.placement(primary), deps.admin_password(primary.id), placements)

    def _keep(self, found: ReplicationSet, primary: Instance, now: float) -> None:
        reading = self._read(found, primary)
        if reading.waits != bool(found.synchronous_names):  # the server is not as the store says: loaded again
            log.info("set %s: its primary's commits %s; loading its configuration", found.id,
                     "wait" if reading.waits else "do not wait")
            self._apply(found.id)
            return
        alone = self._alone_for(found.id, reading, now)
        stalled = bool(found.synchronous_names) and alone >= self.policy.fallback_after
        if stalled and found.policy.durability is Durability.AVAILABLE:
            self._move(found, SyncState.ASYNC,
                       f"commits no longer wait for a replica: none has acknowledged for {alone:.1f} s (durability "
                       "available); it fails over by itself again once one is synchronous")
            return
        self._say(primary, waiting=stalled, alone=alone)
        if stalled:
            return
        if found.sync is SyncState.ASYNC and reading.caught_up and found.replica_ids:
            self._move(found, SyncState.RESYNCING, "commits wait for a replica again; synchronous once one "
                       "holds everything acknowledged before")
        elif found.sync is SyncState.RESYNCING:
            if found.id not in self._marks:
                self._marks[found.id] = None
                return
            mark = self._marks[found.id]
            if mark is None:
                self._marks[found.id] = reading.position
            elif reading.synced is not None and reading.synced >= mark:
                self._move(found, SyncState.SYNC, "synchronous: every commit acknowledged is on a replica")

    def _alone_for(self, set_id: str, reading: SyncReading, now: float) -> float:
        """For how long no replica has acknowledged what its primary wrote: none streams, or the furthest flush
        of the synchronous ones, behind the primary's log, has not moved (a stopped replica's connection looks
        streaming to its primary for a long while). 0.0 while one keeps up."""
        synced = reading.synced
        keeps_up = reading.streaming > 0 and synced is not None and synced >= reading.position
        last = self._progress.get(set_id)
        if keeps_up or (reading.streaming > 0 and synced is not None and (last is None or last[0] != synced)):
            self._progress[set_id] = (synced, now)
            if keeps_up or last is not None:
                self._alone_since.pop(set_id, None)
                return 0.0
        since = self._alone_since.setdefault(set_id, now)
        return now - since

    def _say(self, primary: Instance, *, waiting: bool, alone: float = 0.0) -> None:
        say_commits(self.deps, primary, waiting=waiting, alone=alone)

    def _move(self, found: ReplicationSet, state: SyncState, message: str) -> None:
        """Record `found`'s new state (if the set is still as the round read it: same primary, same version,
        same state), then bring its primary's server in line (a failure is retried at the next check: the server
        then differs from the store)."""
        with self.deps.db.unit_of_work() as uow:
            moved = uow.replication.set_sync(found, state, time.time())
            if moved:
                uow.events.add(found.primary_id, "replication", message)
        self._forget(found.id, keep_checked=True)  # its clocks start again
        if not moved:
            return
        log.warning("set %s: %s", found.id, message)
        if found.sync.waits != state.waits:
            self._apply(found.id)


def say_commits(deps: ReconcilerDeps, primary: Instance, *, waiting: bool, alone: float = 0.0) -> None:
    """The primary's Degraded condition while its commits wait for a replica (strict), or its end; nothing
    when the store says so already."""
    degraded = {c.type: c for c in primary.conditions}.get(ConditionType.DEGRADED)
    said = degraded is not None and degraded.status and degraded.reason == Reason.COMMITS_WAIT_FOR_REPLICA
    if said == waiting:
        return
    observation, message = (Observation.COMMITS_FLOW, "its commits no longer wait for a replica")
    if waiting:
        observation, message = (Observation.COMMITS_WAIT, f"commits wait: no replica has acknowledged for "
                                f"{alone:.0f} s (durability strict); they go on once one streams")
    with deps.db.unit_of_work() as uow:
        current = uow.instances.get(primary.id)
        if current is None or current.deleting:
            return
        uow.instances.record(primary.id, observation, message, generation=current.generation)
        uow.events.add(primary.id, "replication", message)
    log.warning("instance %s: %s", primary.id, message)


def apply_sync(deps: ReconcilerDeps, set_id: str) -> None:
    """The primary of `set_id` waits for a replica, or not, as the store says NOW: its files rewritten from
    the set read afresh, then loaded (`Replication.apply_sync`: nothing else changes, no slot is made or dropped:
    safe beside the operations that do, whose own files say the same)."""
    with deps.db.unit_of_work(write=False) as uow:
        found = uow.replication.get(set_id)
        primary = None if found is None else uow.instances.get(found.primary_id)
    if found is None or primary is None or primary.deleting or primary.endpoint is None:
        return
    replication = deps.engine(primary).replication(deps.version_for(primary.spec))
    if replication is None:
        return
    placement = deps.placement(primary)
    admin = deps.admin_password(primary.id)
    topology = deps.topology_of(found, primary.id)
    deps.runtime.refresh(placement, deps.workload_with(primary.spec, placement, admin, topology))
    replication.apply_sync(placement, admin, topology)

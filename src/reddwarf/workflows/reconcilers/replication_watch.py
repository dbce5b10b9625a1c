"""The replication watch: every replica's streaming state and lag, recorded by a reconciler, never computed on
read (docs/replication.md, "Replication health").

A `Periodic` task of one worker per process, every `Settings.replication_check_interval` seconds, in ONE
process at a time (the store lease `replication-watch`). For each set it asks the primary, in one live read,
how each replica streams (`Replication.observe`), and records each replica's state, lag and the time it was
observed (`set_members`: written when it changed, or at least every `REFRESH` seconds so that the observed
time stays current). A replica that is not streaming on two looks in a row gets the Degraded condition
`ReplicationStopped` (operating_status ERROR) with the reason and an event; the next look that finds it
streaming clears it, with an event. A replica with an operation of its own (being created, deleted, detached)
is left alone for that round; its primary's operations are not a reason to look away (a restart of the
primary shorter than two looks is no condition; a primary that does not come back is one on every replica).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from reddwarf.domain.conditions import Observation, Reason
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.replication import ReplicaHealth, ReplicaState, ReplicationSet, slot_name
from reddwarf.domain.status import ConditionType, InstanceStatus
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps

log = logging.getLogger(__name__)

LEASE = "replication-watch"
# Seconds after which an unchanged state is written again (its observed time).
REFRESH = 30.0
# A replica whose lag moved by less than this many bytes is unchanged (an idle primary still writes a little).
LAG_STEP = 1024 * 1024
_SERVING = frozenset({InstanceStatus.ACTIVE, InstanceStatus.BACKUP})


class ReplicationWatch:
    def __init__(self, deps: ReconcilerDeps, owner: str, interval: float) -> None:
        self.deps = deps
        self.owner = owner
        self.interval = interval
        # Replicas seen not streaming once (a second look in a row makes it a condition).
        self._suspect: set[str] = set()

    def run(self) -> None:
        deps = self.deps
        with deps.db.unit_of_work() as uow:
            if not uow.leases.hold(LEASE, self.owner, max(3 * self.interval, 15.0)):
                return
            sets = uow.replication.all_sets()
            busy = uow.operations.active_kinds()
        for found in sets:
            try:
                self._look(found, busy)
            except Exception:  # loop boundary: one set must not stop the others
                log.exception("replication watch of set %s failed", found.id)

    def _look(self, found: ReplicationSet, busy: Mapping[str, str]) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            members = {m.instance_id: uow.instances.get(m.instance_id) for m in found.members}
        primary = members.get(found.primary_id)
        replicas = [(m, members.get(m.instance_id)) for m in found.members if m.instance_id != found.primary_id]
        states = self._states(found, primary, {m.instance_id: r for m, r in replicas})
        now = time.time()
        for member, replica in replicas:
            if replica is None or replica.deleting or replica.status not in _SERVING or replica.id in busy:
                continue
            state = states.get(slot_name(replica.id)) or ReplicaState(False, detail="its source does not answer")
            previous = member.health
            if previous is None or _moved(previous, state) or now - previous.observed >= REFRESH:
                with deps.db.unit_of_work() as uow:
                    uow.replication.record_health(replica.id, ReplicaHealth(state, now))
            self._judge(replica, state)

    def _states(
        self, found: ReplicationSet, primary: Instance | None, replicas: Mapping[str, Instance | None]
    ) -> dict[str, ReplicaState]:
        """What the primary says of each replica; nothing when it cannot say (every replica then 'does not
        answer' from its source's side: its source is down, or refuses Reddwarf's admin)."""
        if primary is None or primary.deleting or primary.endpoint is None or primary.status not in _SERVING:
            return {}
        deps = self.deps
        replication = deps.engine(primary).replication(deps.version_for(primary.spec))
        if replication is None:
            return {}
        placements = {slot_name(r): deps.placement(replica) for r in found.replica_ids
                      if (replica := replicas.get(r)) is not None and replica.endpoint is not None}
        try:
            return dict(replication.observe(deps.placement(primary), deps.admin_password(primary.id), placements))
        except (TemporaryError, PermanentError) as exc:
            log.info("replication watch: primary %s of set %s does not say: %s", primary.id, found.id, exc.message)
            return {}

    def _judge(self, replica: Instance, state: ReplicaState) -> None:
        degraded = {c.type: c for c in replica.conditions}.get(ConditionType.DEGRADED)
        stopped = degraded is not None and degraded.status and degraded.reason == Reason.REPLICATION_STOPPED
        if state.streaming:
            self._suspect.discard(replica.id)
            if stopped:
                self._record(replica, Observation.REPLICA_STREAMS, "replica streams from its source again")
            return
        if replica.id not in self._suspect:
            self._suspect.add(replica.id)
            return
        message = f"replica does not stream from its source: {state.detail or 'no reason given'}"
        if not stopped or (degraded is not None and degraded.message != message):
            self._record(replica, Observation.REPLICA_STOPPED, message)

    def _record(self, replica: Instance, observation: Observation, message: str) -> None:
        with self.deps.db.unit_of_work() as uow:
            current = uow.instances.get(replica.id)
            if current is None or current.deleting or uow.operations.active_for(replica.id):
                return
            status, operating = uow.instances.record(replica.id, observation, message, generation=current.generation)
            uow.events.add(replica.id, "replication", message)
        log.warning("instance %s: %s (%s / %s)", replica.id, message, status.value, operating.value)


def _moved(previous: ReplicaHealth, state: ReplicaState) -> bool:
    before = previous.state
    if (before.streaming, before.detail) != (state.streaming, state.detail):
        return True
    if (before.lag_bytes is None) != (state.lag_bytes is None):
        return True
    return before.lag_bytes is not None and state.lag_bytes is not None and abs(
        before.lag_bytes - state.lag_bytes) >= LAG_STEP

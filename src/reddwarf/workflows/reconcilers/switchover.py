"""PROMOTE (Trove's `promote_to_replica_source`): a switchover while the primary is alive, losing no write it
acknowledged (docs/replication.md).

The point of no return is `swap_roles`. Before it the primary is stopped cleanly (its last record, the shutdown
checkpoint, is what a replica must have replayed: nothing it acknowledged comes after it) and the replica is
waited for; a replica that does not catch up in time ends the switchover with the old primary started again as
it was, nothing lost. From `swap_roles` on the store says who follows whom, so whatever restarts a member
afterwards (this operation's retry, the health loop once the members are ACTIVE again) starts it in its new
role: the old primary can never take writes again.

`membership` -> `mark` (PROMOTE on every member: the health loop and the replication watch leave them alone)
-> `streams` (the replica streams from its primary now, live) -> `shut` (the writer endpoint refuses new
connections) -> `stop_source` (a clean stop, its last
position read) -> `caught_up` -> `swap_roles` (compare-and-swap) -> `promote` -> `switch` (the writer
endpoint released, to it) -> `source_ready` (its files and socket directory those of the set's primary, a slot
for each other member, loaded) -> `demote` (the old primary's slots removed) -> `start`/`answers` (it starts as
a replica of the new one) -> `repoint-<id>` (each other replica's files rewritten and reloaded: it follows the
new primary without a restart) -> `ready`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.operations import Kind
from reddwarf.domain.replication import slot_name
from reddwarf.domain.status import Fault
from reddwarf.domain.workload import Placement, ToolSpec
from reddwarf.engines.base import Replication
from reddwarf.store.repositories.replication import StaleSet
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.endpoints import hold
from reddwarf.workflows.reconcilers.lifecycle import record as _record
from reddwarf.workflows.reconcilers.lifecycle import record_failure, start_server
from reddwarf.workflows.reconcilers.replication import converge_primary

log = logging.getLogger(__name__)

# How long a replica has to replay its stopped primary's last record: it streamed a moment ago, so what is
# left is what it had received and not yet applied.
CATCH_UP_TIMEOUT = 60.0
_TOOL_TIMEOUT = 60.0
# A tool that copies or rewinds a member's data (a rejoin's pg_rewind, a new seed): as long as a replica's seed.
COPY_TIMEOUT = 6 * 3600.0
_OUTPUT_KEPT = 1 << 20


def run_tool(deps: ReconcilerDeps, placement: Placement, tool: ToolSpec, timeout: float = _TOOL_TIMEOUT) -> bytes:
    """Run a tool of the engine as the instance's user, silent for at most `timeout`; the last MiB of its
    output (it runs as a tenant's OS user: what it prints is not trusted to be small)."""
    kept = bytearray()
    with deps.runtime.open_tool(placement, tool) as run:
        for piece in run.output(1 << 16, timeout):
            kept += piece
            del kept[:-_OUTPUT_KEPT]
        run.finish(timeout)
    return bytes(kept)


class RoleChange:
    """What a switchover and a failover share: the members, their marks, the compare-and-swap of the roles,
    the new primary made ready and the other replicas re-pointed to it."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def _instances(self, ids: list[str]) -> dict[str, Instance]:
        with self.deps.db.unit_of_work(write=False) as uow:
            found = {i: uow.instances.get(i) for i in ids}
        return {i: instance for i, instance in found.items() if instance is not None}

    @staticmethod
    def _mark(uow: UnitOfWork, members: dict[str, Instance], observation: Observation, message: str) -> None:
        for member in members.values():
            _record(member, observation, message)(uow)

    def _replication(self, instance: Instance) -> Replication:
        replication = self.deps.engine(instance).replication(self.deps.version_for(instance.spec))
        if replication is None:
            raise PermanentError(f"{instance.spec.datastore} {instance.spec.datastore_version} has no replication.")
        return replication

    @staticmethod
    def _swap(uow: UnitOfWork, candidate_id: str, old_id: str) -> None:
        found = uow.replication.set_of(candidate_id)
        if found is None:
            raise PermanentError(f"Instance {candidate_id} is no longer a member of a replication set.")
        if found.primary_id == candidate_id:
            return
        if found.primary_id != old_id:
            raise PermanentError(f"The primary of instance {candidate_id}'s set changed to {found.primary_id}.")
        try:
            uow.replication.promote(found, candidate_id)
        except StaleSet:
            raise TemporaryError(f"The replication set of instance {candidate_id} changed meanwhile.") from None
        uow.events.add(candidate_id, "promote", f"instance {candidate_id} is the primary; {old_id} follows it")

    def _source_ready(self, candidate_id: str) -> None:
        with self.deps.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(candidate_id)
        if found is None or found.primary_id != candidate_id:
            raise PermanentError(f"Instance {candidate_id} is no longer the primary of its set.")
        converge_primary(self.deps, found)

    def _repoint_step(self, replication: Replication, other: Instance) -> Callable[[], None]:
        return lambda: self._repoint(replication, other)

    def _repoint(self, replication: Replication, other: Instance) -> None:
        deps = self.deps
        placement = deps.placement(other)
        admin = deps.admin_password(other.id)
        topology = deps.topology(other.id)
        deps.runtime.refresh(placement, deps.workload_with(other.spec, placement, admin, topology))
        if topology is None:
            return
        try:
            replication.reload(placement, admin, topology)
        except (TemporaryError, PermanentError) as exc:
            # Its files say whom to follow: a server that is down now follows the new primary when it starts.
            log.warning("switchover: replica %s did not reload (%s); it follows at its next start", other.id,
                        exc.message)

    def _each(self, ctx: OperationContext, members: dict[str, Instance],
              write: Callable[[Instance], Callable[[UnitOfWork], None]]) -> None:
        with self.deps.db.unit_of_work() as uow:
            if not ctx.lease.renew_in(uow):
                return
            for member in members.values():
                current = uow.instances.get(member.id)
                if current is not None and not current.deleting:
                    write(current)(uow)


class PromoteReplica(RoleChange):
    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            candidate = uow.instances.get(ctx.resource_id)
        if candidate is None or candidate.deleting:
            return
        roles = ctx.step("membership", lambda: self._membership(candidate))
        old_id, others = str(roles["primary"]), [str(r) for r in roles["replicas"]]
        members = self._instances([old_id, candidate.id, *others])
        ctx.store_step("mark", lambda uow: self._mark(uow, members, Observation.PROMOTING,
                                                       f"switchover: instance {candidate.id} becomes the primary"))
        old = members[old_id]
        replication = self._replication(candidate)
        here, there = deps.placement(candidate), deps.placement(old)
        admin = deps.admin_password(candidate.id)
        ctx.step("streams", lambda: self._streams(replication, old, there, candidate.id))
        # The writer endpoint refuses new connections before the primary stops (nobody else may take its address
        # and its clients meanwhile), until the new primary takes writes.
        ctx.step("shut", lambda: hold(deps, old_id, True))
        stopped = ctx.step("stop_source", lambda: self._stop_source(replication, old, there))
        position = str(stopped["position"])
        try:
            ctx.wait_until("caught_up", lambda: replication.replayed(here, admin, position), timeout=CATCH_UP_TIMEOUT,
                           expired=f"it did not replay its primary's last record ({position}) within "
                                   f"{CATCH_UP_TIMEOUT:.0f} s")
        except TemporaryError as exc:
            raise PermanentError(f"Instance {candidate.id} was not promoted: {exc.message}.") from None
        ctx.store_step("swap_roles", lambda uow: self._swap(uow, candidate.id, old_id))
        ctx.step("promote", lambda: replication.promote(here, admin))
        ctx.step("switch", lambda: hold(deps, candidate.id, False))
        ctx.step("source_ready", lambda: self._source_ready(candidate.id))
        ctx.step("demote", lambda: self._demote(replication, there))
        start_server(ctx, deps, old.spec, old.id, there, password=admin)
        for other_id in others:
            if other_id in members:
                ctx.step(f"repoint-{other_id}", self._repoint_step(replication, members[other_id]))
        ctx.store_step("ready", lambda uow: self._settle(uow, members, candidate.id, old_id))

    def _membership(self, candidate: Instance) -> dict[str, Any]:
        with self.deps.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(candidate.id)
        if found is None or found.primary_id == candidate.id:
            raise PermanentError(f"Instance {candidate.id} is not a replica.")
        return {"primary": found.primary_id, "replicas": [r for r in found.replica_ids if r != candidate.id]}

    def _streams(self, replication: Replication, old: Instance, there: Placement, candidate_id: str) -> None:
        """Refuse, before anything is touched, a replica that does not stream from its primary now: its
        primary's last writes would never reach it."""
        slot = slot_name(candidate_id)
        with self.deps.db.unit_of_work(write=False) as uow:
            candidate = uow.instances.get(candidate_id)
        if candidate is None:
            raise PermanentError(f"Instance {candidate_id} no longer exists.")
        replicas = {slot: self.deps.placement(candidate)}
        state = replication.observe(there, self.deps.admin_password(old.id), replicas).get(slot)
        if state is None or not state.streaming:
            why = state.detail if state is not None else "its primary says nothing of it"
            raise PermanentError(f"Instance {candidate_id} does not stream from its primary now ({why}); a "
                                 "switchover would lose the writes it has not received.")

    def _stop_source(self, replication: Replication, old: Instance, there: Placement) -> dict[str, Any]:
        """Stop the primary cleanly and read where its log ends. A primary that did not stop cleanly (killed,
        crashed) leaves no position a replica can be checked against: the switchover is refused."""
        deps = self.deps
        deps.runtime.stop(there, deps.workload(old, there))
        position = replication.stopped_position(run_tool(deps, there, replication.position_tool(there)))
        if position is None:
            raise PermanentError(f"The primary {old.id} did not stop cleanly: nothing says which writes a "
                                 "replica must have, so none was promoted.")
        log.info("switchover: primary %s stopped at %s", old.id, position)
        return {"position": position}

    def _demote(self, replication: Replication, there: Placement) -> None:
        run_tool(self.deps, there, replication.demote_tool(there))

    @staticmethod
    def _settle(uow: UnitOfWork, members: dict[str, Instance], candidate_id: str, old_id: str) -> None:
        for member in members.values():
            role = "the primary" if member.id == candidate_id else f"a replica of {candidate_id}"
            _record(member, Observation.READY, f"switchover done: {role}")(uow)

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        """Before `swap_roles`: the old primary started again as it was (nothing was promoted), every member
        ACTIVE, the fault on the replica. After it: the replica faulted and the other members handed back
        to the health loop, which starts each in the role the store gives it."""
        deps = self.deps
        roles = ctx.journal.get("membership")
        if roles is None:
            record_failure(deps, ctx, error)
            return
        members = self._instances([str(roles["primary"]), ctx.resource_id, *(str(r) for r in roles["replicas"])])
        if "shut" in ctx.journal:  # the writer endpoint leads to whichever member is the primary now
            try:
                hold(deps, ctx.resource_id, False)
            except TemporaryError as exc:
                log.warning("switchover of %s ended; its endpoints are routed at the watch's next round: %s",
                            ctx.resource_id, exc.message)
        if "swap_roles" not in ctx.journal:
            if "streams" in ctx.journal:  # it may have been stopped
                self._restore_source(members.get(str(roles["primary"])))
            message = f"switchover abandoned, nothing changed: {error.message}"
            fault = Fault(message=error.message, details=error.details, created=time.time())
            self._each(ctx, members, lambda member: _record(
                member, Observation.READY, message, fault=fault if member.id == ctx.resource_id else None))
            return
        others = {i: m for i, m in members.items() if i != ctx.resource_id}
        self._each(ctx, others, lambda member: _record(member, Observation.READY, "switchover ended with an error "
                                                       f"on instance {ctx.resource_id}: {error.message}"))
        record_failure(deps, ctx, error)

    def _restore_source(self, old: Instance | None) -> None:
        if old is None or old.deleting:
            return
        deps = self.deps
        placement = deps.placement(old)
        try:
            deps.runtime.start(placement, deps.workload(old, placement))
        except (TemporaryError, PermanentError) as exc:
            log.error("switchover abandoned: primary %s did not start again (%s); the health loop will",
                      old.id, exc.message)



def handlers(deps: ReconcilerDeps) -> dict[str, PromoteReplica]:
    return {Kind.REPLICA_PROMOTE: PromoteReplica(deps)}

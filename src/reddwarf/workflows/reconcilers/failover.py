"""EJECT (Trove's `eject_replica_source`, and the failover watch's automatic failover): a failover, on a source
that has been unhealthy for `Settings.eject_after` seconds (a tenant's request, docs/replication.md "Eject"), or
for `Settings.failover_grace` seconds on every look of the failover watch (`EjectPayload.automatic`,
docs/failover.md).

The old primary is fenced before anything is promoted: the fence is recorded in the store first (from then on
nothing starts its server, `lifecycle.start_server` refuses), then carried out on its host (`Runtime.fence`:
a start lock and a marker the runtime's own start obeys, so a repair this eject superseded cannot start it
again whatever step it is at; every process of its OS user killed, a frozen cgroup thawed so that they die,
and that confirmed). Only then is the most advanced replica (the one holding the most of the old primary's
log) promoted, the set's endpoints switched to it, and the others re-pointed to it. The old primary stays
fenced, status ERROR with the reason, until it rejoins as a replica.

`membership` -> `mark` (EJECT on every member) -> `fence` (the store) -> `shut` (its endpoints refuse new
connections) -> `fenced` (its host) -> `choose` (each
replica asked how much log it holds; the largest wins, journaled) -> `swap_roles` -> `promote` -> `switch`
(the writer endpoint released, to the new primary: writes resume here) -> `source_ready` -> `repoint` (a child
`instance.replica.repoint` on each other replica) -> `repointed` (the children ended; one that failed fails
the eject) -> `ready` (an event with the time from the decision to the switch).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.operations import EjectPayload, Kind, payload_of
from reddwarf.domain.replication import slot_name
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import Fault
from reddwarf.domain.workload import Placement
from reddwarf.engines.base import Replication
from reddwarf.store.repositories.replication import StaleSet
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.endpoints import hold, publish_quietly
from reddwarf.workflows.reconcilers.lifecycle import record as _record
from reddwarf.workflows.reconcilers.lifecycle import record_failure, start_server
from reddwarf.workflows.reconcilers.switchover import COPY_TIMEOUT, RoleChange, run_tool

log = logging.getLogger(__name__)

# How long an eject waits for its other replicas to follow the new primary (each a child operation).
REPOINT_TIMEOUT = 300.0


class EjectSource(RoleChange):
    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            source = uow.instances.get(ctx.resource_id)
        if source is None or source.deleting:
            return
        asked = payload_of(ctx.op.kind, ctx.op.payload, EjectPayload)
        roles = ctx.step("membership", lambda: self._membership(source, asked.automatic))
        replica_ids = [str(r) for r in roles["replicas"]]
        members = self._instances([source.id, *replica_ids])
        if roles.get("answers"):  # it came back since it was found down: nothing is fenced or promoted
            ctx.store_step("abandon", lambda uow: self._abandon(uow, members, source.id))
            return
        ctx.store_step("mark", lambda uow: self._mark(uow, members, Observation.EJECTING,
                                                       f"failover: instance {source.id} is fenced and replaced"))
        ctx.store_step("fence", lambda uow: self._fence(uow, source.id))
        # Its endpoints refuse new connections before it dies: whoever binds its address meanwhile gets nothing.
        ctx.step("shut", lambda: hold(deps, source.id, True))
        there = deps.placement(source)
        ctx.step("fenced", lambda: self._kill(source, there))
        replication = self._replication(source)
        chosen = ctx.step("choose", lambda: self._choose(replication, members, replica_ids))
        candidate = members[str(chosen["candidate"])]
        here = deps.placement(candidate)
        ctx.store_step("swap_roles", lambda uow: self._swap(uow, candidate.id, source.id))
        ctx.step("promote", lambda: replication.promote(here, deps.admin_password(candidate.id)))
        switched = ctx.step("switch", lambda: self._switch(candidate.id))
        ctx.step("source_ready", lambda: self._source_ready(candidate.id))
        others = [r for r in replica_ids if r != candidate.id and r in members]
        ctx.enqueue_children("repoint", [(Kind.REPLICA_REPOINT, other_id) for other_id in others])
        ctx.wait_children("repointed", timeout=REPOINT_TIMEOUT)
        took = float(switched["at"]) - ctx.op.created
        ctx.store_step("ready", lambda uow: self._settle(uow, members, candidate.id, source.id, asked, took))

    def _membership(self, source: Instance, automatic: bool) -> dict[str, Any]:
        """The set's replicas, and whether the source's server answers now (a tenant's request saw it down in
        the store, which the health loop updates every few seconds: a server back meanwhile is not failed over).
        An automatic failover was decided a moment ago by the failover watch, after its grace: not asked again
        (a hung server would cost the ping's whole timeout)."""
        with self.deps.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(source.id)
        if found is None or found.primary_id != source.id:
            raise PermanentError(f"Instance {source.id} is not a replica source.")
        answers = not automatic and self.deps.engine(source).ping(self.deps.placement(source))
        return {"replicas": list(found.replica_ids), "answers": answers}

    def _abandon(self, uow: UnitOfWork, members: dict[str, Instance], source_id: str) -> None:
        message = f"failover of instance {source_id} abandoned: its server answers again"
        self._mark(uow, members, Observation.READY, message)
        uow.events.add(source_id, "eject", message)
        log.warning("%s", message)

    @staticmethod
    def _fence(uow: UnitOfWork, source_id: str) -> None:
        found = uow.replication.set_of(source_id)
        if found is None:
            raise PermanentError(f"Instance {source_id} is no longer a member of a replication set.")
        member = found.member(source_id)
        if member is not None and member.fenced is not None:
            return
        try:
            uow.replication.fence(found, source_id, time.time())
        except StaleSet:
            raise TemporaryError(f"The replication set of instance {source_id} changed meanwhile.") from None
        uow.events.add(source_id, "eject", "fenced: nothing starts its server until it rejoins as a replica")

    def _kill(self, source: Instance, there: Placement) -> None:
        """Fence the server on its host (`Runtime.fence`): from now on nothing starts it there, whoever asks (a
        repair this eject superseded may still be running: its start waits for the fence, then refuses), and
        every process of it is killed, a stopped or frozen one too; returns once none is left."""
        self.deps.runtime.fence(there)
        log.warning("failover: instance %s fenced, its processes killed", source.id)

    def _switch(self, candidate_id: str) -> dict[str, Any]:
        """The set's writer endpoint released, to the new primary (writes resume through it now)."""
        hold(self.deps, candidate_id, False)
        return {"at": time.time()}

    def _choose(self, replication: Replication, members: dict[str, Instance], replica_ids: list[str]) -> dict[str, Any]:
        """The replica holding the most of the old primary's log (the oldest of equals); those that do not
        answer are passed over."""
        deps = self.deps
        held: dict[str, int] = {}
        for replica_id in replica_ids:
            replica = members.get(replica_id)
            if replica is None or replica.deleting:
                continue
            try:
                held[replica_id] = replication.received(deps.placement(replica), deps.admin_password(replica_id))
            except (TemporaryError, PermanentError) as exc:
                log.warning("failover: replica %s does not say how much log it holds: %s", replica_id, exc.message)
        if not held:
            raise TemporaryError("No replica answers: none can be promoted yet.")
        best = max(held.values())
        candidate = next(r for r in replica_ids if held.get(r) == best)
        log.info("failover: replica %s holds the most log (%s)", candidate, held)
        return {"candidate": candidate, "held": held}

    @staticmethod
    def _settle(uow: UnitOfWork, members: dict[str, Instance], candidate_id: str, source_id: str,
                asked: EjectPayload, took: float) -> None:
        how = f"automatic failover ({asked.reason})" if asked.automatic else "failover"
        uow.events.add(source_id, "failover", f"{how}: instance {candidate_id} is the primary; writes went "
                                              f"through the writer endpoint again {took:.2f} s after it was decided")
        for member in members.values():
            if member.id == source_id:
                message = (f"fenced by a failover: instance {candidate_id} is the primary now; this one rejoins its "
                           "set as a replica")
                fault = Fault(message=message, details="", created=time.time())
                _record(member, Observation.FENCED, message, fault=fault)(uow)
                uow.operations.enqueue(Kind.REPLICA_REJOIN, source_id)
            else:
                role = "the primary" if member.id == candidate_id else f"a replica of {candidate_id}"
                _record(member, Observation.READY, f"failover done: {role}")(uow)

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        """Before `swap_roles` nothing was promoted: the fence is lifted (the source may start again as the
        primary: an operator's reset_status), the replicas are ACTIVE again and the source carries the fault.
        After it, the source stays fenced with the fault and the others go back to the health loop, which
        starts each in the role the store gives it."""
        deps = self.deps
        roles = ctx.journal.get("membership")
        if roles is not None:
            members = self._instances([str(r) for r in roles["replicas"]])
            self._each(ctx, members, lambda member: _record(
                member, Observation.READY, f"failover of instance {ctx.resource_id} ended: {error.message}"))
            with deps.db.unit_of_work() as uow:
                held = ctx.lease.renew_in(uow)
                found = uow.replication.set_of(ctx.resource_id) if held else None
                if found is not None:
                    uow.replication.hold_writer(found.id, False)  # to whichever member is the primary now
                if held and "swap_roles" not in ctx.journal:
                    uow.replication.unfence(ctx.resource_id)
                source = uow.instances.get(ctx.resource_id)
            if held and source is not None and "swap_roles" not in ctx.journal:
                deps.runtime.unfence(deps.placement(source))
            if held:
                publish_quietly(deps, f"the failover of {ctx.resource_id} ended")
        record_failure(deps, ctx, error)


class RepointReplica(RoleChange):
    """A child of an eject: the replica's files rewritten for the set as the store has it now (whom to follow)
    and reloaded; a server that is down follows the new primary when it starts."""

    def run(self, ctx: OperationContext) -> None:
        with self.deps.db.unit_of_work(write=False) as uow:
            replica = uow.instances.get(ctx.resource_id)
            found = uow.replication.set_of(ctx.resource_id)
        if replica is None or replica.deleting or found is None or found.primary_id == replica.id:
            return
        ctx.step("follow", self._repoint_step(self._replication(replica), replica))

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        with self.deps.db.unit_of_work() as uow:
            uow.events.add(ctx.resource_id, "replica", f"{ctx.op.kind} failed: {error.message}")


class RejoinMember:
    """A former primary fenced by a failover comes back only as a replica: `mark` -> `rewind` (its stopped data
    directory rewound from the set's primary: what it wrote that the new primary never had is undone) ->
    `unfence` -> `start` / `answers` (as a replica of the primary) -> `ready`. Until `unfence` nothing starts
    its server; a rejoin that fails leaves it fenced, with the fault (reset_status asks again)."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            instance = uow.instances.get(ctx.resource_id)
            found = uow.replication.set_of(ctx.resource_id)
        if instance is None or instance.deleting:
            return
        member = None if found is None else found.member(instance.id)
        if found is None or member is None or (member.fenced is None and "unfence" not in ctx.journal):
            return  # rejoined already, or out of its set
        if found.primary_id == instance.id:
            raise PermanentError(f"Instance {instance.id} is still its set's primary: its failover did not finish.")
        with deps.db.unit_of_work(write=False) as uow:
            primary = uow.instances.get(found.primary_id)
        if primary is None or primary.endpoint is None:
            raise PermanentError(f"The primary {found.primary_id} of instance {instance.id} no longer exists.")
        ctx.store_step("mark", _record(instance, Observation.REBOOTING,
                                       f"rejoining its set as a replica of {primary.id}"))
        replication = deps.engine(instance).replication(deps.version_for(instance.spec))
        if replication is None:
            raise PermanentError(f"{instance.spec.datastore} {instance.spec.datastore_version} has no replication.")
        placement = deps.placement(instance)
        rewound = ctx.step("rewind", lambda: self._rewind(replication, deps.placement(primary), placement, found.id,
                                                          deps.admin_password(primary.id)))
        if rewound["reseed"]:  # journaled: a retry after the wipe seeds again, never rewinds an emptied directory
            ctx.step("reseed", lambda: self._reseed(replication, deps.placement(primary), placement, found.id,
                                                    slot_name(instance.id)))
        ctx.store_step("unfence", lambda uow: self._unfence(uow, instance.id, primary.id))
        ctx.step("release", lambda: deps.runtime.unfence(placement))
        start_server(ctx, deps, instance.spec, instance.id, placement)
        ctx.store_step("ready", _record(instance, Observation.READY, f"rejoined as a replica of {primary.id}",
                                        clear_fault=True))

    def _rewind(
        self, replication: Replication, upstream: Placement, placement: Placement, set_id: str, admin: Secret
    ) -> dict[str, Any]:
        """Rewind; {"reseed": True} when the engine says it cannot be done (the former primary no longer holds
        the log back to where the two diverged). Any other failure leaves its data as it is, fenced, with the
        fault: it may be the only copy of what it wrote last."""
        replication.before_rewind(upstream, admin)
        try:
            for tool in replication.rewind_tools(upstream, placement, set_id):
                said = run_tool(self.deps, placement, tool, COPY_TIMEOUT)
                if said.strip():
                    log.info("rejoin of %s: %s said: %s", placement.instance_id, tool.description,
                             " | ".join(said.decode("utf-8", "replace").strip().splitlines()[-30:])[-2000:])
        except PermanentError as exc:
            if not replication.cannot_rewind(f"{exc.message}\n{exc.details}"):
                raise
            log.warning("rejoin of %s: it cannot be rewound (%s); seeding it again", placement.instance_id,
                        exc.details[-300:])
            return {"reseed": True}
        return {"reseed": False}

    def _reseed(self, replication: Replication, upstream: Placement, placement: Placement, set_id: str,
                slot: str) -> None:
        for tool in replication.reseed_tools(upstream, placement, set_id, slot):
            run_tool(self.deps, placement, tool, COPY_TIMEOUT)

    @staticmethod
    def _unfence(uow: UnitOfWork, instance_id: str, primary_id: str) -> None:
        uow.replication.unfence(instance_id)
        uow.events.add(instance_id, "rejoin", f"rewound from {primary_id}: it starts as its replica")

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        record_failure(self.deps, ctx, error)


def handlers(deps: ReconcilerDeps) -> dict[str, EjectSource | RejoinMember | RepointReplica]:
    return {Kind.REPLICA_EJECT: EjectSource(deps), Kind.REPLICA_REJOIN: RejoinMember(deps),
            Kind.REPLICA_REPOINT: RepointReplica(deps)}

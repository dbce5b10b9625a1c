"""Steps shared by instances and warm-pool slots: take an address, start a server and wait until it answers."""

from __future__ import annotations

import time
from collections.abc import Callable

from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import Endpoint, Instance, InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import Fault
from reddwarf.domain.workload import Placement
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import WAIT_IN_PLACE, OperationContext, StepResult
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps

OBSERVE_EVERY = 0.25


def allocate_address(
    deps: ReconcilerDeps, holder_id: str, standard_port: int, *, instance: bool = False,
    offsets: tuple[int, ...] = (),
) -> StepResult:
    """Allocate an (address, port) to `holder_id` (an instance, or a warm-pool slot), or find the one it
    holds; for an instance also record the endpoint and an event. `offsets`: the engine's other listeners, at
    `port + offset` on the same address (Redis's replication port), which must be free too: a port anyone
    holds there, or another holder's port one such offset away, passes the candidate over."""
    with deps.db.unit_of_work() as uow:
        held = uow.addresses.get(holder_id)
        if held is not None:
            if instance:
                uow.instances.set_endpoint(holder_id, Endpoint(*held))
            return {"address": held[0], "port": held[1]}
        taken = uow.addresses.in_use()
    below = set(offsets) | {offset for engine in deps.engines.values() for offset in engine.extra_port_offsets}
    for address, port in deps.runtime.endpoint_candidates(standard_port):
        if (address, port) in taken or not deps.runtime.bindable(address, port):
            continue
        if any(not 0 < port + offset <= 65535 or (address, port + offset) in taken
               or not deps.runtime.bindable(address, port + offset) for offset in offsets):
            continue
        if any((address, port - offset) in taken for offset in below):  # another holder's extra listener
            continue
        with deps.db.unit_of_work() as uow:
            if uow.addresses.claim(holder_id, address, port):
                if instance:
                    uow.instances.set_endpoint(holder_id, Endpoint(address, port))
                    uow.events.add(holder_id, "BUILD", f"allocated {address}:{port}")
                return {"address": address, "port": port}
    raise TemporaryError(f"No free address for port {standard_port} in the runtime's pool.", delay=5.0)


def start_server(
    ctx: OperationContext, deps: ReconcilerDeps, spec: InstanceSpec, owner_id: str, placement: Placement,
    password: Secret | None = None, alternate: Secret | None = None, hold: float = WAIT_IN_PLACE,
) -> None:
    """The steps `start` (start the server; idempotent) and `answers`: wait, within `ready_timeout`, until
    the admin logs in over the instance's unix socket (its server checked to run as the instance's OS user)
    and the tenant endpoint's listener answers and belongs to that user too (no credential over TCP).

    The wait frees the worker after a moment (`OperationContext.wait_until`); a server that exits during
    start-up, or does not answer in time, rewinds to `start`, which the retry runs again.

    `owner_id` holds the admin password (the instance, or the warm-pool slot being built), unless the
    caller already read it (`password`). `alternate`: another admin password that also counts as an answer
    (a restored server knows its source's until the create's `adopt` step rotates it). `hold`: how long the
    wait looks in place before it frees the worker (a restored server replays or loads its data first: each
    requeue would notice it up to a couple of seconds late)."""
    admin = password if password is not None else deps.admin_password(owner_id)
    engine = deps.engine_for(spec)

    def launch() -> None:
        if deps.fenced(owner_id) is not None:
            raise PermanentError(f"Instance {owner_id} was fenced by a failover: its server does not start until it "
                                 "rejoins its set as a replica.")
        deps.runtime.start(placement, deps.workload_with(spec, placement, admin, deps.topology(owner_id)))

    observed = [time.monotonic() + OBSERVE_EVERY]

    def logs_in() -> bool:
        if engine.probe(placement, engine.admin_user, admin, timeout=2.0):
            return True
        return alternate is not None and engine.probe(placement, engine.admin_user, alternate, timeout=2.0)

    def answers() -> bool:
        if logs_in() and engine.ping(placement, timeout=2.0):
            return True
        # The probe is cheap (a refused connect); observing the process is not (it reads /proc), so a
        # server that died during start-up is noticed within OBSERVE_EVERY rather than on every look.
        if time.monotonic() >= observed[0]:
            observation = deps.runtime.observe(placement)
            if not observation.running:
                raise TemporaryError(f"The database server exited during start-up: {observation.exit_reason}")
            observed[0] = time.monotonic() + OBSERVE_EVERY
        return False

    ctx.step("start", launch)
    ctx.wait_until(
        "answers", answers, timeout=deps.ready_timeout, rewind=("start",), hold=hold,
        expired=f"The database server did not answer within {deps.ready_timeout:.0f} seconds.",
    )


def record(
    instance: Instance, observation: Observation, message: str, *, clear_fault: bool = False,
    fault: Fault | None = None,
) -> Callable[[UnitOfWork], None]:
    """A `store_step` write: record what the operation did on the instance's conditions (a compare-and-swap
    on top of whatever the store holds, `InstanceRepository.record`), with an event named after the status
    derived from them; in the transaction that confirms the operation's lease."""

    def write(uow: UnitOfWork) -> None:
        status, _ = uow.instances.record(
            instance.id, observation, message, generation=instance.generation, clear_fault=clear_fault,
            fault=fault,
        )
        uow.events.add(instance.id, status.value, message)

    return write


def record_failure(deps: ReconcilerDeps, ctx: OperationContext, error: PermanentError) -> None:
    with deps.db.unit_of_work() as uow:
        instance = uow.instances.get(ctx.resource_id)
        # Not after the lease was lost: the operation that took over (a delete) owns the status now.
        if instance is None or not ctx.lease.renew_in(uow):
            return
        fault = Fault(message=error.message, details=error.details, created=time.time())
        record(instance, Observation.FAILED, f"{ctx.op.kind} failed: {error.message}", fault=fault)(uow)

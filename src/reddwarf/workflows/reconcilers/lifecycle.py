"""Steps shared by instances and warm-pool slots: take an address, start a server and wait until it answers."""

from __future__ import annotations

import time

from reddwarf.domain.errors import TemporaryError
from reddwarf.domain.instance import Endpoint, InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.workflows.kernel.context import StepResult
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps

READY_POLL = 0.005
OBSERVE_EVERY = 0.25


def allocate_address(
    deps: ReconcilerDeps, holder_id: str, standard_port: int, *, instance: bool = False
) -> StepResult:
    """Allocate an (address, port) to `holder_id` (an instance, or a warm-pool slot), or find the one it
    holds; for an instance also record the endpoint and an event."""
    with deps.db.unit_of_work() as uow:
        held = uow.addresses.get(holder_id)
        if held is not None:
            if instance:
                uow.instances.set_endpoint(holder_id, Endpoint(*held))
            return {"address": held[0], "port": held[1]}
        taken = uow.addresses.in_use()
    for address, port in deps.runtime.endpoint_candidates(standard_port):
        if (address, port) in taken or not deps.runtime.bindable(address, port):
            continue
        with deps.db.unit_of_work() as uow:
            if uow.addresses.claim(holder_id, address, port):
                if instance:
                    uow.instances.set_endpoint(holder_id, Endpoint(address, port))
                    uow.events.add(holder_id, "BUILD", f"allocated {address}:{port}")
                return {"address": address, "port": port}
    raise TemporaryError(f"No free address for port {standard_port} in the runtime's pool.", delay=5.0)


def start_and_wait(
    deps: ReconcilerDeps, spec: InstanceSpec, owner_id: str, placement: Placement, password: Secret | None = None
) -> None:
    """Start the server (idempotent) and wait, within `ready_timeout`, until the admin logs in over the
    instance's unix socket (its server checked to run as the instance's OS user) and the tenant endpoint's
    listener answers and belongs to that user too (no credential over TCP).

    `owner_id` holds the admin password (the instance, or the warm-pool slot being built), unless the
    caller already read it (`password`)."""
    if password is None:
        password = deps.admin_password(owner_id)
    workload = deps.workload_with(spec, placement, password)
    deps.runtime.start(placement, workload)
    engine = deps.engine_for(spec)
    deadline = time.monotonic() + deps.ready_timeout
    next_observe = time.monotonic() + OBSERVE_EVERY
    while time.monotonic() < deadline:
        if engine.probe(placement, engine.admin_user, password, timeout=2.0) and engine.ping(placement, timeout=2.0):
            return
        # The probe is cheap (a refused connect); observing the process is not (it reads /proc), so a
        # server that died during start-up is noticed within OBSERVE_EVERY rather than on every poll.
        if time.monotonic() >= next_observe:
            observation = deps.runtime.observe(placement)
            if not observation.running:
                raise TemporaryError(f"The database server exited during start-up: {observation.exit_reason}")
            next_observe = time.monotonic() + OBSERVE_EVERY
        time.sleep(READY_POLL)
    raise TemporaryError(f"The database server did not answer within {deps.ready_timeout:.0f} seconds.")

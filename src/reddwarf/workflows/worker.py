"""Builds a `Worker` with every reconciler and the health sweep; used by `reddwarf server` and `reddwarf worker`."""

from __future__ import annotations

import threading

from reddwarf.settings import Settings
from reddwarf.workflows.kernel.worker import Handler, Periodic, Worker
from reddwarf.workflows.reconcilers import accounts, instances
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.health import HealthSweep


def handlers(deps: ReconcilerDeps) -> dict[str, Handler]:
    """Every operation kind a worker runs, with its handler."""
    return {**instances.handlers(deps), **accounts.handlers(deps)}


def build_worker(
    deps: ReconcilerDeps, settings: Settings, *, worker_id: str | None = None, wake: threading.Event | None = None
) -> Worker:
    return Worker(
        deps.db,
        handlers(deps),
        lease_ttl=settings.lease_ttl,
        poll_interval=settings.worker_poll_interval,
        deadline=settings.operation_deadline,
        periodic=(Periodic("health", settings.health_interval, HealthSweep(deps)),),
        worker_id=worker_id,
        wake=wake,
    )

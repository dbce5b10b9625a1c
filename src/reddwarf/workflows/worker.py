"""Builds a `Worker` with every reconciler, the health sweep and the warm-pool keeper; used by `reddwarf server`
and `reddwarf worker`."""

from __future__ import annotations

import threading

from reddwarf.domain.pool import PoolTarget
from reddwarf.settings import Settings
from reddwarf.workflows.kernel.worker import Handler, Periodic, Worker
from reddwarf.workflows.reconcilers import accounts, instances, pool
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.health import HealthSweep


def handlers(deps: ReconcilerDeps, warm_pool: PoolTarget | None = None) -> dict[str, Handler]:
    """Every operation kind a worker runs, with its handler."""
    return {**instances.handlers(deps, warm_pool), **accounts.handlers(deps), **pool.handlers(deps)}


def build_worker(
    deps: ReconcilerDeps, settings: Settings, *, worker_id: str | None = None, wake: threading.Event | None = None
) -> Worker:
    target = settings.warm_pool
    return Worker(
        deps.db,
        handlers(deps, target),
        lease_ttl=settings.lease_ttl,
        poll_interval=settings.worker_poll_interval,
        deadline=settings.operation_deadline,
        periodic=(
            Periodic("health", settings.health_interval, HealthSweep(deps)),
            Periodic(
                "warm-pool", settings.warm_pool_interval,
                pool.PoolKeeper(deps, target, check_every=settings.health_interval),
            ),
        ),
        worker_id=worker_id,
        wake=wake,
    )

"""Builds the workers of a process (`reddwarf server`'s embedded ones, or `reddwarf worker`): every
reconciler and the warm-pool keeper; and the health observer that runs beside them (`build_health`).

With a warm pool the workers are split in two lanes: `count` workers take everything but warm-pool builds
and destroys, and one more takes only those and keeps the pool. A slot's build (seconds of initdb or
mariadb-install-db) then never delays a tenant's create, which is the point of having a pool. And one more
worker takes only failovers (`instance.replica.eject`), so that a set's failover starts at once, whatever the
other workers are doing.
"""

from __future__ import annotations

import threading

from reddwarf.domain.instance import Instance
from reddwarf.domain.operations import Kind
from reddwarf.domain.pool import PoolTarget
from reddwarf.settings import Settings
from reddwarf.workflows.kernel.dispatch import Dispatcher
from reddwarf.workflows.kernel.observer import Observer, ObserverSettings
from reddwarf.workflows.kernel.worker import Handler, Periodic, Worker, new_worker_id
from reddwarf.workflows.reconcilers import (
    accounts,
    backups,
    failover,
    instances,
    pool,
    replication,
    snapbackup,
    snapshots,
    switchover,
    verify,
)
from reddwarf.workflows.reconcilers.archive import ArchiveShipper
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.failover_watch import FailoverPolicy, FailoverWatch, Watched
from reddwarf.workflows.reconcilers.health import HealthSweep
from reddwarf.workflows.reconcilers.replication_watch import ReplicationWatch
from reddwarf.workflows.reconcilers.sync_keeper import SyncKeeper, SyncPolicy

# Seconds between two admin logins of the health observer to an instance where root was ever enabled.
ADMIN_CHECK_EVERY = 60.0
POOL_KINDS = frozenset({pool.BUILD, pool.DESTROY})
FAILOVER_KINDS = frozenset({Kind.REPLICA_EJECT})


# Seconds between two rounds of the runtime's housekeeping (`Runtime.upkeep`).
UPKEEP_INTERVAL = 300.0


def handlers(deps: ReconcilerDeps, warm_pool: PoolTarget | None = None) -> dict[str, Handler]:
    """Every operation kind a worker runs, with its handler."""
    return {
        **instances.handlers(deps, warm_pool), **accounts.handlers(deps), **pool.handlers(deps),
        **backups.handlers(deps), **snapshots.handlers(deps), **verify.handlers(deps), **snapbackup.handlers(deps),
        **replication.handlers(deps), **switchover.handlers(deps), **failover.handlers(deps),
    }


def build_workers(
    deps: ReconcilerDeps, settings: Settings, count: int, *, dispatcher: Dispatcher | None = None,
    pool_wake: threading.Event | None = None,
) -> list[Worker]:
    """`count` workers, plus the warm pool's own lane when the pool is on (none at all for `count` 0).

    The tenant workers take the operations this process's use cases hand over through `dispatcher` (and
    wake on it); the pool's lane waits on `pool_wake` instead (set at shutdown, and when another process
    records pool work on a PostgreSQL store: its own work comes from its own keeper), so that a tenant's
    create does not also wake it into a claim that competes with the create's worker for the store's
    write lock."""
    if count <= 0:
        return []
    keeper = Periodic(
        "warm-pool", settings.warm_pool_interval,
        pool.PoolKeeper(deps, settings.warm_pool, check_every=settings.health_interval),
    )
    # One worker per process ships what servers archived (a store lease per instance keeps processes apart).
    shipper = Periodic("archive", settings.archive_ship_interval, ArchiveShipper(deps, new_worker_id()).run)
    # One worker per process also does the runtime's housekeeping (re-basing fragmented volume images).
    upkeep = Periodic("upkeep", UPKEEP_INTERVAL, deps.runtime.upkeep)
    # And watches the replicas (one process at a time: a store lease).
    watch = Periodic("replication", settings.replication_check_interval,
                     ReplicationWatch(deps, new_worker_id(), settings.replication_check_interval).run)
    first = (shipper, upkeep, watch)
    # A failover never queues behind other work (a repair still trying to restart the dead primary, a backup):
    # one more worker takes only failovers. The others take them too, whoever is free first.
    failovers = _worker(deps, settings, (), only_kinds=FAILOVER_KINDS)
    if settings.warm_pool.size <= 0:
        # No lane of its own: these workers also retire whatever slots an earlier, larger pool left.
        return [*(_worker(deps, settings, (keeper, *first) if n == 0 else (keeper,), dispatcher=dispatcher)
                  for n in range(count)), failovers]
    tenants = [
        _worker(deps, settings, first if n == 0 else (), dispatcher=dispatcher, skip_kinds=POOL_KINDS)
        for n in range(count)
    ]
    return [*tenants, _worker(deps, settings, (keeper,), wake=pool_wake, only_kinds=POOL_KINDS), failovers]


def build_health(deps: ReconcilerDeps, settings: Settings, owner: str) -> Observer[str, Instance]:
    """The health observer of a process: runs `HealthSweep.check` over every watched instance while this
    process holds the store's `health` lease (see `kernel.observer`), and at once on an instance whose
    server the runtime saw exit."""
    sweep = HealthSweep(deps, ping_every=settings.health_ping_interval, admin_every=ADMIN_CHECK_EVERY)
    observer_settings = ObserverSettings(
        lease="health", interval=settings.health_interval, concurrency=settings.health_concurrency,
        lease_ttl=max(5.0, 3 * settings.health_interval),
    )
    observer = Observer(deps.db, observer_settings, owner, sweep.watched, sweep.first_look)
    sweep.wake = observer.wake
    deps.runtime.watch_exits(sweep.server_exited)
    return observer


def build_failover(deps: ReconcilerDeps, settings: Settings, owner: str) -> Observer[str, Watched]:
    """The failover watch of a process (`reconcilers.failover_watch`): the primaries of the sets that fail over
    by themselves, looked at while this process holds the store's `failover` lease."""
    watch = FailoverWatch(deps, FailoverPolicy(grace=settings.failover_grace,
                                               ping_timeout=settings.failover_ping_timeout,
                                               quiet=settings.failover_quiet),
                          sync=SyncKeeper(deps, SyncPolicy(check_every=settings.sync_check_interval,
                                                           fallback_after=settings.sync_fallback_after)))
    observer_settings = ObserverSettings(
        lease="failover", interval=settings.failover_check_interval, concurrency=settings.health_concurrency,
        lease_ttl=max(5.0, 3 * settings.failover_check_interval),
    )
    observer = Observer(deps.db, observer_settings, owner, watch.watched, watch.first_look)
    watch.wake = observer.wake
    deps.runtime.watch_exits(watch.server_exited)
    return observer


def _worker(
    deps: ReconcilerDeps, settings: Settings, periodic: tuple[Periodic, ...], *, worker_id: str | None = None,
    wake: threading.Event | None = None, dispatcher: Dispatcher | None = None,
    only_kinds: frozenset[str] | None = None, skip_kinds: frozenset[str] = frozenset(),
) -> Worker:
    return Worker(
        deps.db,
        handlers(deps, settings.warm_pool),
        lease_ttl=settings.lease_ttl,
        poll_interval=settings.worker_poll_interval,
        deadline=settings.operation_deadline,
        periodic=periodic,
        worker_id=worker_id,
        wake=wake,
        dispatcher=dispatcher,
        only_kinds=only_kinds,
        skip_kinds=skip_kinds,
    )

"""With a warm pool, slot builds get a worker of their own: a tenant's create never queues behind one. Failovers
always have one too (a set's failover never waits for a repair or a backup to let go of a worker). Health is
observed apart from every worker (`build_health`): no worker runs it between operations."""

from __future__ import annotations

from typing import Any, cast

from tests.fakes.runtime import FakeRuntime

from reddwarf.settings import Settings
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.worker import FAILOVER_KINDS, POOL_KINDS, build_workers

DEPS = ReconcilerDeps(db=cast(Any, None), engines={}, runtime=FakeRuntime(), flavors={})


def test_with_a_pool_the_workers_skip_pool_kinds_and_one_more_takes_only_them() -> None:
    workers = build_workers(DEPS, Settings(warm_pool_size=1), 2)
    assert [(w.only_kinds, w.skip_kinds) for w in workers] == [
        (None, POOL_KINDS), (None, POOL_KINDS), (POOL_KINDS, frozenset()), (FAILOVER_KINDS, frozenset())]
    # One tenant worker also ships what servers archived.
    assert [[p.name for p in w.periodic] for w in workers] == [
        ["archive", "upkeep", "replication"], [], ["warm-pool"], []]
    assert {"pool.build", "pool.destroy"} == POOL_KINDS


def test_without_a_pool_every_worker_takes_everything_and_retires_leftover_slots() -> None:
    workers = build_workers(DEPS, Settings(warm_pool_size=0), 2)
    assert [(w.only_kinds, w.skip_kinds) for w in workers] == [
        (None, frozenset()), (None, frozenset()), (FAILOVER_KINDS, frozenset())]
    assert [[p.name for p in w.periodic] for w in workers] == [
        ["warm-pool", "archive", "upkeep", "replication"], ["warm-pool"], []
    ]


def test_no_workers_means_no_pool_lane_either() -> None:
    assert build_workers(DEPS, Settings(warm_pool_size=3), 0) == []

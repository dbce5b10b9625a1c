"""Every registered operation kind has a handler, every handler a registered kind, and every kind's
conflict rules are symmetric (`domain.operations`)."""

from __future__ import annotations

from typing import Any, cast

from reddwarf.domain.operations import REGISTRY, Kind, conflicts
from reddwarf.settings import Settings
from reddwarf.workflows.kernel.worker import Worker
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.worker import handlers

DEPS = ReconcilerDeps(db=cast(Any, None), engines={}, runtime=cast(Any, None), flavors={})


def test_every_kind_has_a_handler_and_every_handler_a_kind() -> None:
    handled = set(handlers(DEPS, Settings().warm_pool))
    assert handled == {kind.value for kind in Kind}
    assert set(REGISTRY) == set(Kind)


def test_conflicts_are_symmetric_and_lifecycle_operations_are_exclusive() -> None:
    for a in Kind:
        for b in Kind:
            assert conflicts(a, b) == conflicts(b, a), (a, b)
    assert conflicts(Kind.INSTANCE_RESTART, Kind.INSTANCE_CREATE)
    assert conflicts(Kind.USERS_GRANT, Kind.USERS_REVOKE)
    assert conflicts(Kind.USERS_GRANT, Kind.INSTANCE_DELETE)
    assert not conflicts(Kind.POOL_BUILD, Kind.USERS_CREATE)


def test_each_kind_has_its_own_deadline_under_the_operators_cap() -> None:
    worker = Worker(cast(Any, None), {}, lease_ttl=30, poll_interval=1, deadline=600)
    assert worker.deadline_of(Kind.USERS_CREATE) == REGISTRY[Kind.USERS_CREATE].deadline == 300
    assert worker.deadline_of(Kind.INSTANCE_CREATE) == 600  # the registry's 900, capped by the operator
    assert worker.deadline_of("test.kind") == 600

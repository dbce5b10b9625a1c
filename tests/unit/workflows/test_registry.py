"""Every registered operation kind has a handler, every handler a registered kind, and every kind's
conflict rules are symmetric (`domain.operations`)."""

from __future__ import annotations

from typing import Any, cast

from reddwarf.domain.operations import REGISTRY, Kind, conflicts
from reddwarf.settings import Settings
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

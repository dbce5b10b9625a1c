"""Every registered operation kind has a handler, every handler a registered kind, and every kind's
conflict rules are symmetric (`domain.operations`)."""

from __future__ import annotations

from typing import Any, cast

from reddwarf.domain.operations import REGISTRY, Kind, conflicts, set_conflicts
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


def test_a_switchover_runs_alone_on_its_whole_set_and_a_replica_create_beside_backups() -> None:
    for other in (Kind.INSTANCE_RESTART, Kind.USERS_CREATE, Kind.BACKUP_CREATE, Kind.SNAPSHOT_CREATE,
                  Kind.SET_CONVERGE, Kind.REPLICA_CREATE, Kind.INSTANCE_DELETE):
        assert set_conflicts(Kind.REPLICA_PROMOTE, other) and set_conflicts(other, Kind.REPLICA_PROMOTE), other
    # A backup's files are no member's: deleting one goes on.
    assert not set_conflicts(Kind.REPLICA_PROMOTE, Kind.BACKUP_DELETE)
    # A replica seeds from its primary: the primary's restart waits, its backups and account writes do not.
    assert set_conflicts(Kind.REPLICA_CREATE, Kind.INSTANCE_RESTART)
    assert not set_conflicts(Kind.REPLICA_CREATE, Kind.BACKUP_CREATE)
    assert not set_conflicts(Kind.REPLICA_CREATE, Kind.USERS_CREATE)

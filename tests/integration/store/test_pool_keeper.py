"""The warm-pool keeper finishes what no operation is working on any more: nothing of a slot is left behind."""

from __future__ import annotations

import time
from typing import Any, cast

from tests.fakes.runtime import FakeRuntime

from reddwarf.domain.capacity import GIB
from reddwarf.domain.pool import PoolProfile, PoolTarget, SlotState
from reddwarf.domain.secret import Secret
from reddwarf.store import Database
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.pool import BUILD, DESTROY, Plan, PoolKeeper

PG15 = PoolProfile("postgresql", "15", "1", 1)


def keeper(db: Database) -> PoolKeeper:
    deps = ReconcilerDeps(db=db, engines={}, runtime=cast(Any, None), flavors={})
    return PoolKeeper(deps, PoolTarget(size=0, failure_pause=60))


def destroys(db: Database, slot_id: str) -> list[Any]:
    with db.unit_of_work(write=False) as uow:
        return [op for op in uow.operations.active_for(slot_id) if op.kind == DESTROY]


def test_a_building_slot_whose_build_ended_unfinished_fails_and_is_destroyed(db: Database) -> None:
    with db.unit_of_work() as uow:
        slot_id = uow.pool.add(PG15)
        build = uow.operations.enqueue(BUILD, slot_id)
    with db.unit_of_work() as uow:
        assert uow.operations.claim("w1", lease_ttl=30) is not None
        uow.operations.fail(build, "w1", "the worker could not record the failure")
    with db.unit_of_work(write=False) as uow:
        slots = uow.pool.list()
    keeper(db)._finish_orphans(slots)
    with db.unit_of_work(write=False) as uow:
        slot = uow.pool.get(slot_id)
    assert slot is not None and slot.state is SlotState.FAILED and "without finishing" in slot.error
    assert len(destroys(db, slot_id)) == 1


def test_a_retired_slot_whose_destroy_gave_up_is_destroyed_again_after_the_pause(db: Database) -> None:
    with db.unit_of_work() as uow:
        slot_id = uow.pool.add(PG15)
        uow.pool.mark(slot_id, SlotState.RETIRING, only_from={SlotState.BUILDING})
        uow.addresses.claim(slot_id, "127.0.1.8", 5432)
        uow.secrets.put(slot_id, "admin", Secret("slot-password"))
        first = uow.operations.enqueue(DESTROY, slot_id)
    with db.unit_of_work() as uow:
        assert uow.operations.claim("w1", lease_ttl=30) is not None
        uow.operations.fail(first, "w1", "umount: target is busy")
    with db.unit_of_work(write=False) as uow:
        slots = uow.pool.list()
    before = time.time()
    keeper(db)._finish_orphans(slots)
    (again,) = destroys(db, slot_id)
    assert again.not_before >= before + 59  # after the failure pause, not in a tight loop


def test_a_tombstone_with_nothing_left_needs_nothing(db: Database) -> None:
    with db.unit_of_work() as uow:
        slot_id = uow.pool.add(PG15)
        uow.pool.mark(slot_id, SlotState.FAILED, only_from={SlotState.BUILDING}, error="initdb failed")
    with db.unit_of_work(write=False) as uow:
        slots = uow.pool.list()
    keeper(db)._finish_orphans(slots)
    assert destroys(db, slot_id) == []


def test_the_pool_builds_no_slot_the_host_storage_cannot_hold(db: Database) -> None:
    with db.unit_of_work() as uow:  # a tenant's instance already holds most of the host
        assert uow.reservations.reserve("tenant-instance", "instance", 2 * GIB, None)
    deps = ReconcilerDeps(db=db, engines={}, runtime=FakeRuntime(capacity=3 * GIB - 1), flavors={})
    pool_keeper = PoolKeeper(deps, PoolTarget(size=1, failure_pause=60))

    with db.unit_of_work() as uow:
        pool_keeper._apply(uow, Plan(add=(PG15,)))
    with db.unit_of_work(write=False) as uow:
        assert uow.pool.list() == []
        assert uow.reservations.total() == 2 * GIB

    deps = ReconcilerDeps(db=db, engines={}, runtime=FakeRuntime(capacity=3 * GIB), flavors={})
    with db.unit_of_work() as uow:
        PoolKeeper(deps, PoolTarget(size=1, failure_pause=60))._apply(uow, Plan(add=(PG15,)))
    with db.unit_of_work(write=False) as uow:
        (slot,) = uow.pool.list()
        assert uow.reservations.held(slot.id) == GIB

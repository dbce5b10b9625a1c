"""The step journal and the lease: a step is journaled only while the lease is held, with the lease extended.

Each test drives an `OperationContext` over a real SQLite store (a file, WAL, as in production) without
the keeper thread, so nothing renews behind the test's back.
"""

from __future__ import annotations

import time

import pytest

from reddwarf.domain.errors import LeaseLost
from reddwarf.store.database import Database
from reddwarf.store.records import Operation
from reddwarf.workflows.kernel.context import LeaseKeeper, OperationContext

WORKER = "worker-1"


def claimed(db: Database, ttl: float) -> OperationContext:
    with db.unit_of_work() as uow:
        uow.operations.enqueue("instance.create", "res-1")
        op = uow.operations.claim(WORKER, ttl)
    assert op is not None
    return OperationContext(db, op, WORKER, LeaseKeeper(db, op.id, WORKER, ttl))


def current(db: Database, op_id: str) -> Operation:
    with db.unit_of_work(write=False) as uow:
        op = uow.operations.get(op_id)
    assert op is not None
    return op


def journal(db: Database, op_id: str) -> list[str]:
    with db.unit_of_work(write=False) as uow:
        return [step for step, _ in uow.operations.list_steps(op_id)]


def supersede(db: Database) -> None:
    with db.unit_of_work() as uow:
        assert uow.operations.supersede("res-1", ["instance.create"]) == 1


def test_each_step_is_journaled_with_its_result_and_extends_the_lease(db: Database) -> None:
    ctx = claimed(db, ttl=30.0)
    before = current(db, ctx.op.id).lease_expires
    assert before is not None
    assert ctx.step("one", lambda: {"address": "127.0.0.1"}) == {"address": "127.0.0.1"}
    ctx.step("two", lambda: None)
    assert journal(db, ctx.op.id) == ["one", "two"]
    after = current(db, ctx.op.id).lease_expires
    assert after is not None and after > before
    # A journaled step is not run again: its recorded result is returned.
    assert ctx.step("one", lambda: pytest.fail("a journaled step ran again")) == {"address": "127.0.0.1"}


def test_a_step_superseded_while_it_runs_is_not_journaled_and_nothing_runs_after_it(db: Database) -> None:
    ctx = claimed(db, ttl=30.0)
    ctx.step("one", lambda: None)
    with pytest.raises(LeaseLost):
        ctx.step("two", lambda: supersede(db))
    assert journal(db, ctx.op.id) == ["one"]
    with pytest.raises(LeaseLost):
        ctx.step("three", lambda: pytest.fail("a step ran after the operation was superseded"))
    assert current(db, ctx.op.id).state == "superseded"


def test_a_stale_lease_is_renewed_before_the_step_so_a_superseded_operation_runs_no_further_step(
    db: Database,
) -> None:
    ttl = 0.3
    ctx = claimed(db, ttl=ttl)
    supersede(db)
    deadline = time.monotonic() + 10
    while ctx.lease.confirmed_age() < ttl / 3:  # the confirmation ages; no store access meanwhile
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(LeaseLost):
        ctx.step("one", lambda: pytest.fail("a step ran although the lease could not be renewed"))
    assert journal(db, ctx.op.id) == []


def test_a_lease_taken_over_by_another_worker_is_lost_at_the_next_step_boundary(db: Database) -> None:
    ctx = claimed(db, ttl=0.2)
    deadline = time.monotonic() + 10
    while True:  # the lease expires and another worker claims the operation
        with db.unit_of_work() as uow:
            other = uow.operations.claim("worker-2", 30.0)
        if other is not None:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(LeaseLost):
        ctx.step("one", lambda: None)
    assert journal(db, ctx.op.id) == []
    assert current(db, ctx.op.id).lease_owner == "worker-2"


def test_a_step_after_a_host_suspend_asks_the_store_first(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The monotonic clock stands still while a VM is suspended; the wall clock does not. A lease confirmed
    "a moment ago" by the first may be long expired (and taken over) by the second."""
    ctx = claimed(db, ttl=30.0)
    ctx.step("one", lambda: None)
    with db.unit_of_work() as uow:  # meanwhile the lease expired and another worker took the operation
        uow.operations.let_go(ctx.op.id, WORKER)
        assert uow.operations.claim("worker-2", 30.0, now=time.time() + 31) is not None
    suspended = time.time() + 60
    monkeypatch.setattr(time, "time", lambda: suspended)
    ran: list[str] = []
    with pytest.raises(LeaseLost):
        ctx.step("two", lambda: ran.append("two"))
    assert ran == []
    assert journal(db, ctx.op.id) == ["one"]

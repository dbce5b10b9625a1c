"""Hand-over: an operation recorded in this process goes to an idle worker of it, already leased.

What must hold: the operation runs once and completes; nothing is lost when the process dies before a
worker took it (its lease expires and any worker claims it); an operation that waited in the inbox past
its lease, and was claimed elsewhere meanwhile, is not run a second time; a process with no idle worker
records its operations pending for the others. Real SQLite store (a file, WAL, as in production).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reddwarf.domain.errors import PermanentError
from reddwarf.services.context import ServiceContext
from reddwarf.settings import Settings
from reddwarf.store.database import Database
from reddwarf.store.records import Operation, OperationState
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.kernel.dispatch import Dispatcher
from reddwarf.workflows.kernel.worker import Worker

KIND = "instance.restart"
DEADLINE_S = 10.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'reddwarf.db'}", key_file=tmp_path / "secret.key")
    database.upgrade()
    yield database
    database.dispose()


class Recording:
    """A handler whose one step records which lease owner ran it."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    def run(self, ctx: OperationContext) -> None:
        ctx.step("work", lambda: {"by": self.runs.append(ctx.worker_id) or ctx.worker_id})

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        raise AssertionError(f"operation failed: {error.message}")


def worker(db: Database, handler: Recording, *, dispatcher: Dispatcher | None = None, ttl: float = 30) -> Worker:
    return Worker(db, {KIND: handler}, lease_ttl=ttl, poll_interval=0.05, deadline=900, dispatcher=dispatcher,
                  worker_id="claimer" if dispatcher is None else None)


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def current(db: Database, op_id: str) -> Operation:
    with db.unit_of_work(write=False) as uow:
        op = uow.operations.get(op_id)
    assert op is not None
    return op


def leased(db: Database, owner: str, ttl: float) -> Operation:
    with db.unit_of_work() as uow:
        return uow.operations.enqueue_leased(KIND, "res-1", None, owner=owner, lease_ttl=ttl)


def test_an_idle_worker_runs_the_operation_a_use_case_recorded(db: Database) -> None:
    dispatcher = Dispatcher("proc-1", lease_ttl=30)
    handler = Recording()
    stop = threading.Event()
    thread = threading.Thread(target=worker(db, handler, dispatcher=dispatcher).run, args=(stop,))
    thread.start()
    try:
        ctx = ServiceContext(Settings(), db, engines={}, flavors={}, dispatch=dispatcher)
        wait_for(dispatcher.lease, "the worker to wait idle")
        with db.unit_of_work() as uow:
            enqueued = ctx.enqueue(uow, KIND, "res-1")
        assert enqueued.leased is not None and enqueued.leased.lease_owner is not None
        ctx.start(enqueued)
        wait_for(lambda: current(db, enqueued.id).state == OperationState.DONE, "the operation to finish")
    finally:
        stop.set()
        dispatcher.notify()
        thread.join(timeout=DEADLINE_S)
    assert handler.runs == [enqueued.leased.lease_owner]
    assert current(db, enqueued.id).attempts == 1


def test_a_process_without_an_idle_worker_records_the_operation_for_any_worker(db: Database) -> None:
    ctx = ServiceContext(Settings(), db, engines={}, flavors={}, dispatch=Dispatcher("api-only", lease_ttl=30))
    with db.unit_of_work() as uow:
        enqueued = ctx.enqueue(uow, KIND, "res-1")
    ctx.start(enqueued)
    assert enqueued.leased is None
    assert current(db, enqueued.id).state == OperationState.PENDING
    handler = Recording()
    assert worker(db, handler).run_once()
    assert handler.runs == ["claimer"]


def test_an_operation_handed_over_to_a_process_that_died_is_claimed_once_its_lease_expires(db: Database) -> None:
    op = leased(db, "dead-proc:h1", ttl=0.3)  # the process died before any worker of it took the operation
    handler = Recording()
    other = worker(db, handler)
    assert not other.run_once(), "claimed while the hand-over's lease still held"
    wait_for(other.run_once, "the lease to expire and the operation to be claimed")
    assert handler.runs == ["claimer"]
    assert current(db, op.id).state == OperationState.DONE
    assert current(db, op.id).attempts == 2


def test_an_operation_that_waited_past_its_lease_is_not_run_twice(db: Database) -> None:
    dispatcher = Dispatcher("proc-1", lease_ttl=0.3)
    op = leased(db, "proc-1:h1", ttl=0.3)
    dispatcher.hand_over(op)  # ... and every worker of proc-1 is busy for longer than the lease
    handler = Recording()
    wait_for(worker(db, handler).run_once, "another worker to claim the expired operation")
    assert worker(db, handler, dispatcher=dispatcher, ttl=0.3).run_once()  # proc-1's worker gets to it now
    assert handler.runs == ["claimer"]
    assert current(db, op.id).state == OperationState.DONE


def test_at_shutdown_operations_never_taken_become_claimable_at_once(db: Database) -> None:
    dispatcher = Dispatcher("proc-1", lease_ttl=300)
    op = leased(db, "proc-1:h1", ttl=300)
    dispatcher.hand_over(op)
    assert dispatcher.let_go_of_waiting(db) == 1
    handler = Recording()
    assert worker(db, handler).run_once()
    assert handler.runs == ["claimer"]

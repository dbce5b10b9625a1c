"""Hand-over: an operation recorded in this process goes to a worker of it that waits for work.

What must hold: the operation runs once, at once (the worker here would otherwise sleep a minute until its
next poll); a promised worker is not promised twice and is released when the recording transaction rolls
back; nothing is lost when the process dies before its worker started the operation, or when the workers
stop; a delete that supersedes a handed-over create is not kept waiting by its lease; and an operation
whose hand-over came late runs nothing of its handler once another worker has it. Real SQLite store (a
file, WAL, as in production).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest
from tests.support.server import wait_for as support_wait_for

from reddwarf.domain.errors import PermanentError
from reddwarf.services.context import ServiceContext
from reddwarf.settings import Settings
from reddwarf.store.database import Database
from reddwarf.store.records import Operation, OperationState
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.kernel.dispatch import Dispatcher
from reddwarf.workflows.kernel.worker import Periodic, Worker

KIND = "instance.restart"
POLL_INTERVAL_S = 60.0  # a worker that is not handed the operation would not get to it within a test
DEADLINE_S = 10.0


class Recording:
    """A handler whose one step records which lease owner ran it (none at all once `skip` is set)."""

    def __init__(self, *, skip: bool = False) -> None:
        self.runs: list[str] = []
        self.failures: list[str] = []
        self.skip = skip

    def run(self, ctx: OperationContext) -> None:
        if not self.skip:
            ctx.step("work", lambda: self._record(ctx.worker_id))

    def _record(self, owner: str) -> dict[str, str]:
        self.runs.append(owner)
        return {"by": owner}

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        self.failures.append(error.message)


class RunningWorker:
    """A worker thread of "proc-1" waiting on its dispatcher."""

    def __init__(
        self, db: Database, handler: Recording, *, deadline: float = 900, periodic: tuple[Periodic, ...] = ()
    ) -> None:
        self.dispatcher = Dispatcher("proc-1", lease_ttl=30)
        self.worker = Worker(db, {KIND: handler}, lease_ttl=30, poll_interval=POLL_INTERVAL_S, deadline=deadline,
                             dispatcher=self.dispatcher, periodic=periodic)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,))

    def __enter__(self) -> RunningWorker:
        self.thread.start()
        wait_for(lambda: self.dispatcher.waiting == 1, "the worker to wait for work")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.dispatcher.close()
        self.thread.join(timeout=DEADLINE_S)
        assert not self.thread.is_alive()


def claimer(db: Database, handler: Recording) -> Worker:
    """A worker of another process: it claims from the store."""
    return Worker(db, {KIND: handler}, lease_ttl=30, poll_interval=0.05, deadline=900, worker_id="claimer")


def wait_for(condition: Callable[[], object], what: str) -> None:
    support_wait_for(condition, DEADLINE_S, what, interval=0.01)


def current(db: Database, op_id: str) -> Operation:
    with db.unit_of_work(write=False) as uow:
        op = uow.operations.get(op_id)
    assert op is not None
    return op


def context(db: Database, dispatcher: Dispatcher | None) -> ServiceContext:
    return ServiceContext(Settings(), db, engines={}, flavors={}, dispatch=dispatcher)


def test_a_waiting_worker_runs_the_operation_a_use_case_recorded_at_once(db: Database) -> None:
    handler = Recording()
    with RunningWorker(db, handler) as running:
        with db.unit_of_work() as uow:
            op_id = context(db, running.dispatcher).enqueue(uow, KIND, "res-1")
        wait_for(lambda: current(db, op_id).state == OperationState.DONE, "the operation to finish")
    assert len(handler.runs) == 1 and handler.runs[0].startswith("proc-1:h")  # under the hand-over's lease
    assert current(db, op_id).attempts == 1


def test_work_recorded_while_the_worker_was_busy_between_rounds_is_not_left_for_its_next_poll(
    db: Database,
) -> None:
    in_sweep, sweep_may_end = threading.Event(), threading.Event()

    def sweep() -> None:  # a periodic task (the health sweep) that runs after a round found nothing
        if not in_sweep.is_set():
            in_sweep.set()
            assert sweep_may_end.wait(DEADLINE_S)

    handler = Recording()
    running = RunningWorker(db, handler, periodic=(Periodic("sweep", 0, sweep),))
    running.thread.start()
    try:
        assert in_sweep.wait(DEADLINE_S)
        with db.unit_of_work() as uow:  # no worker waits, so no promise: recorded pending, workers notified
            op_id = context(db, running.dispatcher).enqueue(uow, KIND, "res-1")
        sweep_may_end.set()
        wait_for(lambda: current(db, op_id).state == OperationState.DONE, "the operation to finish")
    finally:
        sweep_may_end.set()
        running.__exit__()
    assert handler.runs == [running.worker.worker_id]


def test_a_promised_worker_is_not_promised_twice_and_comes_back_when_the_promise_is_abandoned(db: Database) -> None:
    handler = Recording()
    with RunningWorker(db, handler) as running:
        promise = running.dispatcher.promise(KIND)
        assert promise is not None
        assert running.dispatcher.promise(KIND) is None  # its only worker is spoken for
        with db.unit_of_work() as uow:  # so a second operation is recorded for a claim
            second = context(db, running.dispatcher).enqueue(uow, KIND, "res-2")
        assert current(db, second).state == OperationState.PENDING
        promise.abandon()  # the first request's transaction rolled back: the worker claims the second
        wait_for(lambda: current(db, second).state == OperationState.DONE, "the second operation to finish")
    assert handler.runs == [running.worker.worker_id]  # claimed, under the worker's own id


def test_a_rolled_back_transaction_records_nothing_and_releases_the_worker(db: Database) -> None:
    with RunningWorker(db, Recording()) as running:
        with pytest.raises(RuntimeError), db.unit_of_work() as uow:
            context(db, running.dispatcher).enqueue(uow, KIND, "res-1")
            raise RuntimeError("the request failed after its operation was recorded")
        wait_for(lambda: running.dispatcher.waiting == 1, "the worker to wait for work again")
        with db.unit_of_work(write=False) as uow:
            assert uow.operations.active_for("res-1") == []


def test_an_operation_promised_in_a_process_that_died_is_claimed_once_its_lease_expires(db: Database) -> None:
    with db.unit_of_work() as uow:  # recorded and leased; the process died before its worker started it
        op = uow.operations.enqueue_leased(KIND, "res-1", None, owner="dead:h1", lease_ttl=30)
    assert op.lease_expires is not None
    with db.unit_of_work() as uow:
        assert uow.operations.claim("claimer", 30, now=op.lease_expires - 1) is None
    with db.unit_of_work() as uow:
        claimed = uow.operations.claim("claimer", 30, now=op.lease_expires + 1)
    assert claimed is not None and claimed.id == op.id


def test_an_operation_handed_over_as_the_workers_stop_is_claimable_at_once(db: Database) -> None:
    handler = Recording()
    running = RunningWorker(db, handler).__enter__()
    promise = running.dispatcher.promise(KIND)
    assert promise is not None
    with db.unit_of_work() as uow:
        op = uow.operations.enqueue_leased(KIND, "res-1", None, owner=promise.owner, lease_ttl=promise.ttl)
    running.stop.set()
    running.dispatcher.close()
    promise.fulfil(op)
    running.thread.join(timeout=DEADLINE_S)
    assert not running.thread.is_alive() and handler.runs == []
    assert claimer(db, handler).run_once()  # not 30 s later
    assert handler.runs == ["claimer"]
    assert current(db, op.id).attempts == 1  # the stopping worker gave its attempt back


def test_a_delete_superseding_a_handed_over_create_does_not_wait_for_its_lease(db: Database) -> None:
    handler = Recording(skip=True)  # as a create that finds its instance deleting: no step
    with RunningWorker(db, handler) as running:
        promise = running.dispatcher.promise(KIND)
        assert promise is not None
        with db.unit_of_work() as uow:
            op = uow.operations.enqueue_leased(KIND, "res-1", None, owner=promise.owner, lease_ttl=promise.ttl)
        with db.unit_of_work() as uow:  # the delete
            assert uow.operations.supersede("res-1", [KIND]) == 1
        promise.fulfil(op)

        def lease_dropped() -> bool:
            with db.unit_of_work(write=False) as uow:
                return uow.operations.live_leases("res-1") == []

        wait_for(lease_dropped, "the superseded operation's lease to be dropped")
    assert current(db, op.id).state == OperationState.SUPERSEDED


def test_a_late_hand_over_runs_nothing_once_another_worker_has_the_operation(db: Database) -> None:
    handler = Recording()
    with RunningWorker(db, handler, deadline=100) as running:
        promise = running.dispatcher.promise(KIND)
        assert promise is not None
        with db.unit_of_work() as uow:
            op = uow.operations.enqueue_leased(KIND, "res-1", None, owner=promise.owner, lease_ttl=promise.ttl)
        assert op.lease_expires is not None
        with db.unit_of_work() as uow:  # its lease ran out meanwhile, and another worker claimed it
            assert uow.operations.claim("claimer", 300, now=op.lease_expires + 1) is not None
        # Handed over long after it was recorded: past its lease, and past its deadline too.
        promise.fulfil(dataclasses.replace(op, created=op.created - 200, updated=op.updated - 200))
        wait_for(lambda: running.dispatcher.waiting == 1, "the worker to be done with it")
    assert handler.runs == [] and handler.failures == []
    assert current(db, op.id).lease_owner == "claimer"
    assert current(db, op.id).state == OperationState.RUNNING

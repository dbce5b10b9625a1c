"""Waits that free the worker, and a lost lease that stops the step's work (`kernel.context`, `fencing`).

Real SQLite store and worker threads; the children are real processes. Every wait is on a condition with
a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reddwarf import fencing
from reddwarf.domain.errors import LeaseLost, PermanentError, TemporaryError
from reddwarf.store.database import Database
from reddwarf.store.records import Operation, OperationState
from reddwarf.workflows.kernel.context import LeaseKeeper, OperationContext
from reddwarf.workflows.kernel.worker import Handler, Worker

KIND = "instance.restart"


class WaitsForTheWorld:
    """One step, then a wait on `gate` that looks in place for a moment only."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def run(self, ctx: OperationContext) -> None:
        ctx.step("begin", lambda: None)
        ctx.wait_until("world", self.gate.is_set, timeout=120, expired="the world never came", hold=0.05)

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        raise AssertionError(f"operation {ctx.op.id} failed: {error.message}")


@contextmanager
def workers(db: Database, handler: Handler, count: int, *, ttl: float = 30.0) -> Iterator[list[Worker]]:
    stop = threading.Event()
    crew = [Worker(db, {KIND: handler}, lease_ttl=ttl, poll_interval=0.05, deadline=900) for _ in range(count)]
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in crew]
    for thread in threads:
        thread.start()
    try:
        yield crew
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def operations(db: Database, ids: list[str]) -> list[Operation]:
    with db.unit_of_work(write=False) as uow:
        found = [uow.operations.get(op_id) for op_id in ids]
    assert all(op is not None for op in found)
    return [op for op in found if op is not None]


def journaled(db: Database, op_id: str) -> list[str]:
    with db.unit_of_work(write=False) as uow:
        return [step for step, _ in uow.operations.list_steps(op_id)]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_more_waiting_operations_than_workers_all_progress(db: Database) -> None:
    gate = threading.Event()
    with db.unit_of_work() as uow:
        ids = [uow.operations.enqueue(KIND, f"res-{n}") for n in range(5)]
    with workers(db, WaitsForTheWorld(gate), 2):
        # Two workers, five operations waiting on the same closed gate: each got its turn, so no worker
        # sat on a wait.
        wait_for(lambda: all("world.since" in journaled(db, op_id) for op_id in ids), 60,
                 "every operation to start waiting")
        assert all(op.state != OperationState.DONE for op in operations(db, ids))
        gate.set()
        wait_for(lambda: all(op.state == OperationState.DONE for op in operations(db, ids)), 60,
                 "every operation to finish once the world is ready")
    for op_id in ids:
        assert journaled(db, op_id) == ["begin", "world.since", "world"]
    # Waiting is not failing: no attempt was spent on it.
    assert {op.attempts for op in operations(db, ids)} == {1}


class StartsThenWaits:
    """`start` something, then wait for it; the wait never succeeds and times out quickly."""

    def __init__(self) -> None:
        self.starts = 0

    def run(self, ctx: OperationContext) -> None:
        ctx.step("start", self._start)
        ctx.wait_until("answers", lambda: False, timeout=0.3, expired="it never answered",
                       rewind=("start",), hold=0.05)

    def _start(self) -> None:
        self.starts += 1

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        pass


def test_a_wait_times_out_from_its_first_look_and_rewinds_to_what_it_waited_for(db: Database) -> None:
    with db.unit_of_work() as uow:
        op_id = uow.operations.enqueue(KIND, "res-1")
    handler = StartsThenWaits()
    worker = Worker(db, {KIND: handler}, lease_ttl=30, poll_interval=0.05, deadline=900)
    errors: list[str] = []
    deadline = time.monotonic() + 30
    while handler.starts < 2:  # requeued (not yet) until the timeout, then retried from `start`
        assert time.monotonic() < deadline
        if worker.run_once():
            op = operations(db, [op_id])[0]
            errors.append(op.last_error)
        else:
            time.sleep(0.02)
    assert "it never answered" in errors
    assert any(error.startswith("waiting for answers") for error in errors)
    op = operations(db, [op_id])[0]
    # One attempt spent, on the timeout; the looks that found nothing yet gave theirs back.
    assert op.attempts == 1


def test_a_superseded_step_has_its_child_processes_killed_within_a_third_of_the_ttl(
    db: Database, tmp_path: Path
) -> None:
    ttl = 3.0
    pidfile = tmp_path / "child.pid"

    class RunsAChild:
        def __init__(self) -> None:
            self.outcome: list[BaseException] = []

        def run(self, ctx: OperationContext) -> None:
            try:
                ctx.step("child", lambda: fencing.run(
                    ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], timeout=120))
            except BaseException as exc:
                self.outcome.append(exc)
                raise

        def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
            pass

    handler = RunsAChild()
    with db.unit_of_work() as uow:
        op_id = uow.operations.enqueue(KIND, "res-1")
    with workers(db, handler, 1, ttl=ttl):
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 30, "the child to start")
        pid = int(pidfile.read_text())
        with db.unit_of_work() as uow:  # a delete supersedes the operation while its child runs
            assert uow.operations.supersede("res-1", [KIND]) == 1
        superseded = time.monotonic()
        wait_for(lambda: not _alive(pid), ttl / 3 + 2.0, "the child to be killed")
        killed_after = time.monotonic() - superseded
        wait_for(lambda: bool(handler.outcome), 10, "the step to end")
    assert isinstance(handler.outcome[0], LeaseLost)
    assert journaled(db, op_id) == []
    # The keeper's cadence is a third of the TTL; the rest is scheduling on a busy host.
    assert killed_after < ttl / 3 + 2.0


def test_a_cancelled_fence_kills_a_child_as_it_starts_and_refuses_every_commit() -> None:
    fence = fencing.Fence("attempt-1")
    with fencing.fenced(fence):
        assert fencing.current() is fence
        done = fencing.run(["true"], timeout=10)
        assert done.returncode == 0
        fence.cancel()
        with pytest.raises(LeaseLost):
            fencing.run(["sleep", "60"], timeout=120)
        with pytest.raises(LeaseLost):
            fence.confirm()
    assert fencing.current() is fencing.UNFENCED


def test_a_temporary_error_in_the_check_rewinds_too(db: Database) -> None:
    class DiesDuringStartUp:
        def __init__(self) -> None:
            self.starts = 0

        def run(self, ctx: OperationContext) -> None:
            ctx.step("start", self._start)
            ctx.wait_until("answers", self._check, timeout=60, expired="never", rewind=("start",))

        def _start(self) -> None:
            self.starts += 1

        def _check(self) -> bool:
            if self.starts == 1:
                raise TemporaryError("the server exited during start-up", delay=0)
            return True

        def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
            pass

    with db.unit_of_work() as uow:
        op_id = uow.operations.enqueue(KIND, "res-1")
    handler = DiesDuringStartUp()
    worker = Worker(db, {KIND: handler}, lease_ttl=30, poll_interval=0.05, deadline=900)
    deadline = time.monotonic() + 30
    while operations(db, [op_id])[0].state != OperationState.DONE:
        assert time.monotonic() < deadline
        if not worker.run_once():
            time.sleep(0.02)
    assert handler.starts == 2
    # The rewind took the first start and the wait's start out; the retry's first look found it ready.
    assert journaled(db, op_id) == ["start", "answers"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"



def _claimed(db: Database, ttl: float, **keeper: Any) -> tuple[Operation, LeaseKeeper]:
    with db.unit_of_work() as uow:
        uow.operations.enqueue(KIND, "res-1")
        op = uow.operations.claim("worker-1", ttl)
    assert op is not None
    return op, LeaseKeeper(db, op.id, "worker-1", ttl, **keeper)


def _child_under(fence: fencing.Fence, pidfile: Path) -> list[BaseException]:
    """Run `sleep 60` under `fence` in a thread; the list gets what the run raised."""
    outcome: list[BaseException] = []

    def run() -> None:
        with fencing.fenced(fence):
            try:
                fencing.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], timeout=120)
            except BaseException as exc:
                outcome.append(exc)

    threading.Thread(target=run, daemon=True).start()
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 30, "the child to start")
    return outcome


def test_a_renewal_hanging_on_the_store_does_not_keep_the_children_past_the_lease(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl = 1.5
    _, keeper = _claimed(db, ttl)
    hang = threading.Event()
    monkeypatch.setattr(keeper, "renew_now", lambda: hang.wait(30))  # a store that does not answer
    with keeper:
        started = time.monotonic()
        outcome = _child_under(keeper.fence, tmp_path / "child.pid")
        pid = int((tmp_path / "child.pid").read_text())
        wait_for(lambda: not _alive(pid), 10, "the child to be killed")
        # Killed before the lease could expire and be claimed by another worker (the watchdog's margin).
        assert time.monotonic() - started < ttl
        wait_for(lambda: bool(outcome), 10, "the run to end")
        hang.set()
    assert isinstance(outcome[0], LeaseLost)


def test_past_its_deadline_a_step_is_stopped_and_its_lease_no_longer_renewed(db: Database, tmp_path: Path) -> None:
    _, keeper = _claimed(db, 30.0, deadline=time.time() + 0.5)
    with keeper:
        outcome = _child_under(keeper.fence, tmp_path / "child.pid")
        pid = int((tmp_path / "child.pid").read_text())
        wait_for(lambda: not _alive(pid), 10, "the child to be killed at the deadline")
        wait_for(lambda: bool(outcome), 10, "the run to end")
    assert isinstance(outcome[0], LeaseLost)
    assert keeper.lost


def test_a_status_write_of_an_operation_that_lost_its_lease_is_not_made(db: Database) -> None:
    op, keeper = _claimed(db, 30.0)
    ctx = OperationContext(db, op, "worker-1", keeper)
    with db.unit_of_work() as uow:  # a delete took over
        assert uow.operations.supersede("res-1", [KIND]) == 1
    written: list[str] = []
    with pytest.raises(LeaseLost):
        ctx.store_step("active", lambda uow: written.append("ACTIVE"))
    assert written == []
    assert journaled(db, op.id) == []

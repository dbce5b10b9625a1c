"""The worker loop: claim an operation, run its handler step by step, record the outcome.

Any number of workers (threads in `reddwarf server`, or `reddwarf worker` processes) share the store.
A worker killed at any point loses nothing: its lease expires and another worker (or itself after a
restart) claims the operation and resumes after the last journaled step. Workers of the process that
recorded an operation may get it handed over instead of claiming it (`kernel.dispatch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from reddwarf.domain.errors import LeaseLost, NotYet, PermanentError, StoreUnavailable, TemporaryError
from reddwarf.domain.operations import registered
from reddwarf.store.database import Database
from reddwarf.store.records import Operation
from reddwarf.workflows.kernel.context import LeaseKeeper, OperationContext, StepResult
from reddwarf.workflows.kernel.crash import crash_point
from reddwarf.workflows.kernel.dispatch import Dispatcher, Handed
from reddwarf.workflows.kernel.retry import backoff

log = logging.getLogger(__name__)

# How long a worker waits before it looks again after the metadata store was unavailable.
STORE_RETRY_S = 1.0
# The longest an idle worker waits between two looks at the store (unless its `poll_interval` is longer).
IDLE_POLL_MAX_S = 1.0


class Handler(Protocol):
    """Runs one kind of operation. `run` raises TemporaryError to retry, PermanentError to give up."""

    def run(self, ctx: OperationContext) -> None: ...

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        """Record the failure on the resource (fault, status); called once, before the op is failed."""
        ...


@dataclass(frozen=True)
class Periodic:
    """A task every worker runs on an interval between operations (e.g. the health sweep)."""

    name: str
    interval: float
    fn: Callable[[], None]


def attempt_tag(op: Operation) -> str:
    """Names one holding of `op`'s lease, for what its steps write outside the store (`reddwarf.fencing`):
    the attempt, and a nonce (a wait gives its attempt back, so two holdings may share the number)."""
    return f"{op.id[:8]}-a{op.attempts}-{uuid.uuid4().hex[:8]}"


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Claims and runs operations until told to stop."""

    def __init__(
        self,
        db: Database,
        handlers: Mapping[str, Handler],
        *,
        lease_ttl: float,
        poll_interval: float,
        deadline: float,
        max_attempts: int = 12,
        periodic: Sequence[Periodic] = (),
        worker_id: str | None = None,
        wake: threading.Event | None = None,
        only_kinds: frozenset[str] | None = None,
        skip_kinds: frozenset[str] = frozenset(),
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.db = db
        self.handlers = dict(handlers)
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.periodic = tuple(periodic)
        self.worker_id = worker_id or new_worker_id()
        # A lane: the operation kinds this worker takes (None: all but `skip_kinds`).
        self.only_kinds = only_kinds
        self.skip_kinds = skip_kinds
        self._next_run = {p.name: 0.0 for p in self.periodic}
        # When an operation this worker requeued (a wait, a retry) is due again: its wait ends by then.
        self._due_again: float | None = None
        if dispatcher is not None and wake is not None:
            raise ValueError("a worker waits on its dispatcher or on a wake-up event, not both")
        # This process's use cases hand operations over to the worker while it waits (`kernel.dispatch`).
        self._dispatcher = dispatcher
        # Without a dispatcher: set by whoever enqueued work in this process (or by shutdown).
        self._wake = wake or threading.Event()

    def run(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.worker_id)
        handed: Handed | None = None
        idle_polls = 0
        while not stop.is_set():
            # Before looking for work: a notification after this point makes the wait below return at once.
            seen = self._dispatcher.generation if self._dispatcher is not None else 0
            try:
                if handed is not None:
                    busy, handed = self._run_handed(handed), None
                else:
                    busy = self.run_once()
                self._run_periodic()
            except StoreUnavailable:  # logged by the store; no traceback five times a second in an outage
                handed = None
                stop.wait(STORE_RETRY_S)
                continue  # and look again
            except Exception:  # loop boundary: log, back off, go on
                log.exception("worker %s: unexpected error in the loop", self.worker_id)
                busy, handed = False, None
            idle_polls = 0 if busy else idle_polls + 1
            if not busy and not stop.is_set():
                handed = self._wait(seen, idle_polls)
        if handed is not None:  # handed over as the worker was told to stop: claimable at once, attempt back
            # (in a store outage, when its lease runs out instead)
            with contextlib.suppress(StoreUnavailable), self.db.unit_of_work() as uow:
                uow.operations.let_go(handed.operation.id, handed.owner, give_back_attempt=True)
        log.info("worker %s stopped", self.worker_id)

    def accepts(self, kind: str) -> bool:
        """Whether this worker's lane takes operations of `kind`."""
        if self.only_kinds is not None:
            return kind in self.only_kinds
        return kind not in self.skip_kinds

    def _wait(self, seen: int, idle_polls: int) -> Handed | None:
        """Wait for work: `poll_interval` after a busy round, then twice as long after each idle one, up to
        `IDLE_POLL_MAX_S`, and never past the time an operation this worker requeued is due again. Work
        recorded in this process is handed over or wakes the worker at once, and so does, on a PostgreSQL
        store, work of other processes (LISTEN/NOTIFY); the poll is for the rest (work of another process on
        SQLite, a retry's delay or a dead worker's lease running out), which an idle worker thus finds
        within a second, at the cost of one look at the store a second at rest."""
        timeout = min(self.poll_interval * 2 ** min(idle_polls - 1, 16), max(self.poll_interval, IDLE_POLL_MAX_S))
        if self._due_again is not None:
            timeout = min(timeout, max(0.0, self._due_again - time.monotonic()))
            self._due_again = None
        if self._dispatcher is not None:
            return self._dispatcher.wait(self.accepts, timeout, since=seen)
        self._wake.wait(timeout)
        # A wake-up that lands after the wait is not lost: the next round looks at the store.
        self._wake.clear()
        return None

    def _run_handed(self, handed: Handed) -> bool:
        op = handed.operation
        log.debug("worker %s runs operation %s (%s %s), handed over under lease %s",
                  self.worker_id, op.id, op.kind, op.resource_id, handed.owner)
        # A new operation: no journal. Its lease was written when it was recorded.
        self._run(op, handed.owner, {}, ttl=handed.ttl, confirmed_at=op.updated)
        return True

    def _run_periodic(self) -> None:
        now = time.monotonic()
        for task in self.periodic:
            if now >= self._next_run[task.name]:
                self._next_run[task.name] = now + task.interval
                task.fn()

    def run_once(self) -> bool:
        """Claim and run at most one operation; True if one was claimed."""
        with self.db.unit_of_work(write=False) as uow:
            if not uow.operations.any_due(only=self.only_kinds, skip=self.skip_kinds):
                return False
        with self.db.unit_of_work() as uow:
            op = uow.operations.claim(self.worker_id, self.lease_ttl, only=self.only_kinds, skip=self.skip_kinds)
            journal = uow.operations.steps(op.id) if op else {}
        if op is None:
            return False
        self._run(op, self.worker_id, journal, ttl=self.lease_ttl)
        return True

    def _run(
        self, op: Operation, owner: str, journal: Mapping[str, StepResult], *, ttl: float,
        confirmed_at: float | None = None,
    ) -> None:
        handler = self.handlers.get(op.kind)
        if handler is None:
            log.error("operation %s has unknown kind %s; failing it", op.id, op.kind)
            with self.db.unit_of_work() as uow:
                uow.operations.fail(op.id, owner, f"unknown operation kind {op.kind}")
            return
        with LeaseKeeper(
            self.db, op.id, owner, ttl, confirmed_at=confirmed_at, tag=attempt_tag(op),
            on_point=lambda fence, point: crash_point(op.kind, fence.step, point),
            deadline=op.created + self.deadline_of(op.kind),
        ) as lease:
            if lease.confirmed_age() >= ttl / 3:
                # Not confirmed lately (a hand-over that waited): nothing of the handler, not even its failure
                # handling at the deadline, runs on an operation that another worker may have by now.
                lease.renew_now()
                if lease.lost:
                    log.warning("operation %s: lease %s lost before it started; letting go", op.id, owner)
                    with self.db.unit_of_work() as uow:
                        uow.operations.let_go(op.id, owner)
                    return
            ctx = OperationContext(self.db, op, owner, lease, dict(journal))
            self._execute(handler, ctx)

    def _execute(self, handler: Handler, ctx: OperationContext) -> None:
        op = ctx.op
        try:
            deadline = self.deadline_of(op.kind)
            if time.time() - op.created > deadline:
                raise PermanentError(
                    f"Operation {op.kind} did not finish within {deadline:.0f} seconds.",
                    details=op.last_error,
                )
            handler.run(ctx)
        except StoreUnavailable:
            # Not the operation's failure: no attempt spent on it, no fault. The lease runs out unless the
            # store comes back in time for the keeper; the operation is then claimed again and resumes.
            raise
        except LeaseLost:
            log.warning("operation %s: lease lost (superseded or expired); letting go", op.id)
            with self.db.unit_of_work() as uow:
                uow.operations.let_go(op.id, ctx.worker_id)
        except NotYet as exc:
            log.debug("operation %s: not yet (%s); requeued in %.2fs", op.id, exc.message, exc.delay)
            self._release(ctx, exc.delay, exc.message, count_attempt=False)
        except TemporaryError as exc:
            if op.attempts >= self.max_attempts:
                self._give_up(handler, ctx, PermanentError(exc.message, details="gave up after retries"))
                return
            log.info("operation %s: temporary error, retry in %.2fs: %s", op.id, exc.delay, exc.message)
            self._release(ctx, exc.delay, exc.message)
        except PermanentError as exc:
            self._give_up(handler, ctx, exc)
        except Exception as exc:  # loop boundary: an unexpected error is retried, then recorded
            log.exception("operation %s (%s): unexpected error", op.id, op.kind)
            if op.attempts >= self.max_attempts:
                self._give_up(handler, ctx, PermanentError("Internal error.", details=type(exc).__name__))
            else:
                # Only the type reaches the operation (and so, at the deadline, a tenant's fault details):
                # exception texts may hold SQL, parameters or host paths. The log above has the rest.
                self._release(ctx, backoff(op.attempts), f"internal error ({type(exc).__name__})")
        else:
            with self.db.unit_of_work() as uow:
                uow.operations.complete(op.id, ctx.worker_id)
            log.info("operation %s (%s %s) done", op.id, op.kind, op.resource_id)

    def deadline_of(self, kind: str) -> float:
        """Seconds from acceptance an operation of `kind` may take: its kind's deadline in the registry
        (`domain.operations`), never more than the worker's `deadline` (the operator's cap)."""
        spec = registered(kind)
        return self.deadline if spec is None else min(self.deadline, spec.deadline)

    def _release(self, ctx: OperationContext, delay: float, error: str, *, count_attempt: bool = True) -> None:
        with self.db.unit_of_work() as uow:
            uow.operations.release(ctx.op.id, ctx.worker_id, delay=delay, error=error, count_attempt=count_attempt)
        due = time.monotonic() + delay
        self._due_again = due if self._due_again is None else min(self._due_again, due)

    def _give_up(self, handler: Handler, ctx: OperationContext, error: PermanentError) -> None:
        log.error("operation %s (%s %s) failed: %s", ctx.op.id, ctx.op.kind, ctx.op.resource_id, error.message)
        try:
            handler.on_failure(ctx, error)
        finally:
            with self.db.unit_of_work() as uow:
                uow.operations.fail(ctx.op.id, ctx.worker_id, error.message)

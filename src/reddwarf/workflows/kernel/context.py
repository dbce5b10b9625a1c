"""What a handler sees while it runs one operation: the journal-backed `step()`, `wait_until()` and the
lease keeper.

The lease is confirmed (renewed with a conditional UPDATE that only matches while this worker holds a
RUNNING operation whose lease has not expired) by the keeper thread every third of the TTL and, at the end
of every step, in the same transaction that journals the step: a step is journaled only while the lease is
held. A step starts without a store round trip when the lease was confirmed less than a third of the TTL
ago (the keeper's own cadence), otherwise it renews first.

A lost lease stops the work, not only its journaling: the keeper cancels the step's `Fence`
(`reddwarf.fencing`), which kills the step's child processes, within a third of the TTL of the loss (a
renewal refused: the operation was superseded or taken); a watchdog thread does it, without a store round
trip, once the lease has gone unconfirmed for `STOP_AT` of its TTL (the worker was paused, or a renewal
hangs on the store) or the operation's deadline has passed. The step itself then fails with `LeaseLost` at
its next fenced commit or step boundary.

A step that waits for the world (`wait_until`: a server becoming ready; later a replica catching up, a
backup finishing) looks for at most `hold` seconds in place, the first time, then raises `NotYet`: the
worker requeues the operation with its lease released (no attempt counted) and is free for other work.
The wait's first look that failed is journaled, so its timeout counts from there whichever worker looks
next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reddwarf import fencing
from reddwarf.domain.errors import LeaseLost, NotYet, PermanentError, TemporaryError
from reddwarf.store.database import Database
from reddwarf.store.records import ACTIVE_STATES, Operation, OperationState
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.crash import crash_point

log = logging.getLogger(__name__)

StepResult = dict[str, Any]

# How long `wait_until` looks in place, the first time, before it frees the worker: most servers start
# within it, and a requeue costs two store transactions (the release and the next claim).
WAIT_IN_PLACE = 1.0
# How often it looks in place: at first, and at most (the interval doubles in between).
WAIT_POLL = 0.005
WAIT_POLL_MAX = 0.05
# The longest a requeued wait sleeps before its next look (the delay grows with the wait).
WAIT_REQUEUE_MAX = 2.0
# The share of the TTL after which a worker whose renewals did not get through stops the step's work on its
# own (the watchdog): before the lease can expire and be claimed, even while a renewal hangs on the store.
STOP_AT = 0.9


class LeaseKeeper:
    """Renews an operation's lease from a background thread every third of its TTL.

    `confirmed_age()` says how long ago the store last confirmed that this worker holds the lease (the
    claim counts: build the keeper right after it, or give the wall-clock time the lease was written as
    `confirmed_at`)."""

    def __init__(
        self, db: Database, op_id: str, worker_id: str, ttl: float, *, confirmed_at: float | None = None,
        tag: str | None = None, on_point: Callable[[fencing.Fence, str], None] | None = None,
        deadline: float | None = None,
    ) -> None:
        self._db = db
        self._op_id = op_id
        self._worker_id = worker_id
        self._ttl = ttl
        self._stop = threading.Event()
        self._lost = threading.Event()
        wall = time.time()
        self._confirmed_wall = wall if confirmed_at is None else min(wall, confirmed_at)
        self._confirmed = time.monotonic() - (wall - self._confirmed_wall)
        # The operation's deadline (wall clock): past it the lease is no longer renewed.
        self._deadline = deadline
        self._thread = threading.Thread(target=self._loop, name=f"lease-{op_id[:8]}", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name=f"watch-{op_id[:8]}", daemon=True)
        # What the steps run under: cancelled (their children killed) the moment the lease is known lost.
        self.fence = fencing.Fence(tag or op_id, confirm=self._confirm, expired=self.stale, on_point=on_point)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        self._watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._watchdog.join()

    def stale(self) -> bool:
        """Whether the work must stop without asking the store: the lease was not confirmed for `STOP_AT`
        of its TTL (it may be claimed by another worker any moment), or the operation's deadline passed."""
        if self._deadline is not None and time.time() > self._deadline:
            return True
        return self.confirmed_age() >= STOP_AT * self._ttl

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        if self._lost.is_set():
            raise LeaseLost(f"lease on operation {self._op_id} lost")

    def _confirm(self) -> None:
        """The fence's commit check: a store round trip, whatever the keeper's cadence."""
        self.renew_now()
        self.check()

    def _lose(self, why: str) -> None:
        if not self._lost.is_set():
            self._lost.set()
            log.warning("operation %s: lease of %s lost (%s); stopping its work", self._op_id, self._worker_id, why)
        self.fence.cancel()

    def confirmed_age(self) -> float:
        """Seconds since the store last confirmed the lease (claim or successful renewal), by whichever of
        the monotonic clock (immune to wall-clock steps) and the wall clock (which, unlike the monotonic
        one, advances while the host is suspended) says longer."""
        return max(time.monotonic() - self._confirmed, time.time() - self._confirmed_wall)

    def renew_now(self) -> None:
        started = time.monotonic()
        with self._db.unit_of_work() as uow:
            ok = uow.operations.renew(self._op_id, self._worker_id, self._ttl)
        self.settle(ok, started)

    def renew_in(self, uow: UnitOfWork) -> bool:
        """Renew inside the caller's unit of work; call `settle` with the result once it has committed."""
        return uow.operations.renew(self._op_id, self._worker_id, self._ttl)

    def settle(self, renewed: bool, started: float) -> None:
        """Record the outcome of a renewal begun at monotonic time `started` (and committed since)."""
        if renewed:
            # Under the GIL a float store is atomic; the keeper and the step thread may both get here.
            self._confirmed = max(self._confirmed, started)
            self._confirmed_wall = max(self._confirmed_wall, time.time() - (time.monotonic() - started))
        else:
            self._lose("the store refused the renewal: superseded, or expired and taken")

    def _watch(self) -> None:
        """The watchdog: apart from the renewals (which may hang on the store), stop the work once `stale`.
        After a pause (SIGSTOP, a VM freeze) it fires as soon as the process runs again."""
        while not self._stop.wait(self._ttl / 10):
            if self.stale():
                self._lose(self._staleness())
                return

    def _staleness(self) -> str:
        if self._deadline is not None and time.time() > self._deadline:
            return "the operation's deadline passed"
        return f"not confirmed for {self.confirmed_age():.1f}s of its TTL of {self._ttl:g}s"

    def _loop(self) -> None:
        # Every third of the TTL after the last confirmation (a handed-over lease may be older than the
        # keeper), and not in a tight loop while the store fails.
        while not self._stop.wait(max(self._ttl / 10, self._ttl / 3 - self.confirmed_age())):
            if self.stale():
                # Paused or cut off from the store past the lease, or past the deadline: no store round trip
                # needed to know it, nor to kill this one's children.
                self._lose(self._staleness())
                return
            try:
                self.renew_now()
            except Exception:  # loop boundary: a store hiccup must not kill the renewer
                log.exception("renewing lease of operation %s failed", self._op_id)
            if self._lost.is_set():
                return


@dataclass
class OperationContext:
    """One claimed operation: `step(name, fn)` runs `fn` unless the journal already holds `name`."""

    db: Database
    op: Operation
    worker_id: str
    lease: LeaseKeeper
    journal: dict[str, StepResult] = field(default_factory=dict)

    @property
    def resource_id(self) -> str:
        return self.op.resource_id

    def step(self, name: str, fn: Callable[[], StepResult | None]) -> StepResult:
        if name in self.journal:
            return self.journal[name]
        if self.lease.confirmed_age() >= self.lease.ttl / 3:
            self.lease.renew_now()
        self.lease.check()
        crash_point(self.op.kind, name, "before")
        log.info("operation %s (%s %s): step %s", self.op.id, self.op.kind, self.op.resource_id, name)
        self.lease.fence.step = name
        with fencing.fenced(self.lease.fence):
            result = fn() or {}
        crash_point(self.op.kind, name, "after")
        self.lease.check()
        # One transaction: renew the lease and, only if it is still ours, journal the step.
        started = time.monotonic()
        with self.db.unit_of_work() as uow:
            held = self.lease.renew_in(uow)
            if held:
                uow.operations.record_step(self.op.id, name, result)
        self.lease.settle(held, started)
        self.lease.check()
        self.journal[name] = result
        return result

    def store_step(self, name: str, write: Callable[[UnitOfWork], StepResult | None]) -> StepResult:
        """A step that only writes the store (a status, an event): `write` runs in the transaction that
        renews the lease and journals the step, and only if the lease is still held, so a worker that lost
        its lease (a paused create resumed after a delete took over) writes nothing."""
        if name in self.journal:
            return self.journal[name]
        self.lease.check()
        crash_point(self.op.kind, name, "before")
        log.info("operation %s (%s %s): step %s", self.op.id, self.op.kind, self.op.resource_id, name)
        started = time.monotonic()
        result: StepResult = {}
        with self.db.unit_of_work() as uow:
            held = self.lease.renew_in(uow)
            if held:
                result = write(uow) or {}
                uow.operations.record_step(self.op.id, name, result)
        self.lease.settle(held, started)
        self.lease.check()
        crash_point(self.op.kind, name, "after")
        self.journal[name] = result
        return result

    def wait_until(
        self, name: str, check: Callable[[], bool], *, timeout: float, expired: str,
        rewind: Sequence[str] = (), hold: float = WAIT_IN_PLACE, poll: float = WAIT_POLL,
    ) -> None:
        """A step that waits until `check()` is true: journaled as `name` once it is.

        Looks every `poll` seconds (doubling up to `WAIT_POLL_MAX`) for at most `hold` seconds the first
        time, once per claim after that, then raises `NotYet` (the worker requeues the
        operation, lease released, and looks again later: module docstring). `timeout` counts from the
        first look that found it not ready (journaled as `<name>.since`); past it the wait fails with
        TemporaryError(`expired`), as does a `check` raising TemporaryError, and both rewind the journal:
        the wait and the steps in `rewind` (what started the thing waited for) run again on the retry."""
        if name in self.journal:
            return
        since_step = f"{name}.since"
        # In place only before the first requeue: a wait that outlasts it costs one look per claim.
        stop_holding = time.monotonic() + (hold if since_step not in self.journal else 0.0)
        interval = poll
        while True:
            self.lease.check()
            try:
                self.lease.fence.step = name
                with fencing.fenced(self.lease.fence):
                    ready = check()
            except NotYet:
                raise
            except TemporaryError:
                self._rewind((since_step, *rewind))
                raise
            if ready:
                break
            # Not at the first look: from now on the wait has a start, whichever worker looks next. (A wait
            # that ends at its first look costs no journal write.)
            since = float(self.step(since_step, lambda: {"at": time.time()})["at"])
            waited = time.time() - since
            if waited > timeout:
                self._rewind((since_step, *rewind))
                raise TemporaryError(expired)
            if time.monotonic() >= stop_holding:
                delay = min(WAIT_REQUEUE_MAX, max(0.05, waited / 4))
                raise NotYet(f"waiting for {name} ({waited:.1f}s so far)", delay=delay)
            time.sleep(interval)
            interval = min(2 * interval, WAIT_POLL_MAX)
        self.step(name, lambda: None)

    def enqueue_children(self, name: str, children: Sequence[tuple[str, str]]) -> StepResult:
        """A store step that records `children` ((kind, resource id) each) as this operation's children, in
        the transaction that journals it: exactly once, whatever crashes."""
        return self.store_step(name, lambda uow: {
            "children": [uow.operations.enqueue_child(self.op, kind, resource_id) for kind, resource_id in children]
        })

    def wait_children(self, name: str, *, timeout: float) -> None:
        """A wait (`wait_until`) until every child of this operation has ended. A child that failed fails the
        parent with its error (`PermanentError`); a superseded one (its resource was deleted) has ended."""

        def ended() -> bool:
            with self.db.unit_of_work(write=False) as uow:
                children = uow.operations.children(self.op.id)
            for child in children:
                if child.state == OperationState.FAILED:
                    raise PermanentError(f"{child.kind} on {child.resource_id} failed: {child.last_error}")
            return all(child.state not in ACTIVE_STATES for child in children)

        self.wait_until(name, ended, timeout=timeout, expired=f"the children of operation {self.op.id} did not end "
                        f"within {timeout:.0f} s")

    def _rewind(self, steps: Sequence[str]) -> None:
        """Take `steps` out of the journal (under the lease, like a journal write)."""
        started = time.monotonic()
        with self.db.unit_of_work() as uow:
            held = self.lease.renew_in(uow)
            if held:
                uow.operations.forget_steps(self.op.id, steps)
        self.lease.settle(held, started)
        self.lease.check()
        for step in steps:
            self.journal.pop(step, None)

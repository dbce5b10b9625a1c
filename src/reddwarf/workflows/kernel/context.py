"""What a handler sees while it runs one operation: the journal-backed `step()` and the lease keeper.

The lease is confirmed (renewed with a conditional UPDATE that only matches while this worker holds a
RUNNING operation) by the keeper thread every third of the TTL and, at the end of every step, in the same
transaction that journals the step: a step is journaled only while the lease is held, and a superseded or
expired operation is noticed at that step boundary (`LeaseLost`), before its next step starts. A step
starts without a store round trip when the lease was confirmed less than a third of the TTL ago (the
keeper's own cadence), otherwise it renews first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reddwarf.domain.errors import ReddwarfError
from reddwarf.store.database import Database
from reddwarf.store.records import Operation
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.crash import crash_point

log = logging.getLogger(__name__)

StepResult = dict[str, Any]


class LeaseLost(ReddwarfError):
    """Another worker owns the operation now (our lease expired or the operation was superseded)."""


class LeaseKeeper:
    """Renews an operation's lease from a background thread every third of its TTL.

    `confirmed_age()` says how long ago the store last confirmed that this worker holds the lease (the
    claim counts: build the keeper right after it, or give the wall-clock time the lease was written as
    `confirmed_at`)."""

    def __init__(
        self, db: Database, op_id: str, worker_id: str, ttl: float, *, confirmed_at: float | None = None
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
        self._thread = threading.Thread(target=self._loop, name=f"lease-{op_id[:8]}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        if self._lost.is_set():
            raise LeaseLost(f"lease on operation {self._op_id} lost")

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
            self._lost.set()

    def _loop(self) -> None:
        # Every third of the TTL after the last confirmation (a handed-over lease may be older than the
        # keeper), and not in a tight loop while the store fails.
        while not self._stop.wait(max(self._ttl / 10, self._ttl / 3 - self.confirmed_age())):
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

"""Hand-over: an operation recorded in this process goes straight to one of its idle workers.

A use case that records an operation asks `lease()` first. When one of this process's workers is idle,
the operation is written already leased to a lease owner id of its own (state running, attempt 1) in the
use case's own transaction, and `hand_over` puts it in the workers' inbox once that transaction has
committed. The worker that takes it runs it under that lease: no claim transaction (on SQLite, the store's
write lock, taken just as the API answers), no candidate query, no journal read (a new operation has none)
between the tenant's request and the work.

Durability is unchanged: the operation is in the store, leased for `lease_ttl` like any claimed one.
Should this process die before a worker takes it, the lease expires and any worker claims it, as when a
worker dies mid-operation. An operation that waited in the inbox (every worker got busy meanwhile) renews
its lease before its first step, or lets go of it when the lease was lost.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reddwarf.store.database import Database
from reddwarf.store.records import Operation


@dataclass(frozen=True, slots=True)
class Lease:
    owner: str
    ttl: float


class Dispatcher:
    """The inbox shared by this process's tenant workers, and the wake-up they wait on."""

    def __init__(self, process_id: str, lease_ttl: float, wake: threading.Event | None = None) -> None:
        self._process_id = process_id
        self._lease_ttl = lease_ttl
        self.wake = wake or threading.Event()
        self._inbox: queue.SimpleQueue[tuple[Operation, str]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    # --- the use case's side ---

    def lease(self) -> Lease | None:
        """A lease for an operation about to be recorded, when a worker is idle to take it; else None (the
        operation is recorded pending and claimed as usual)."""
        with self._lock:
            if self._idle <= self._inbox.qsize():
                return None
        # Unique per hand-over: each operation's lease is compared by owner, and two operations must never
        # share one (a worker renewing one must not be able to renew the other).
        return Lease(owner=f"{self._process_id}:h{next(self._numbers)}", ttl=self._lease_ttl)

    def hand_over(self, operation: Operation) -> None:
        """After the recording transaction committed: the operation is a worker's to run."""
        if operation.lease_owner is None:
            raise ValueError(f"operation {operation.id} was not recorded with a lease to hand over")
        self._inbox.put((operation, operation.lease_owner))
        self.wake.set()

    def notify(self) -> None:
        """Pending work was recorded: wake the idle workers into a claim."""
        self.wake.set()

    # --- the workers' side ---

    def take(self) -> tuple[Operation, str] | None:
        """A handed-over operation and its lease owner, if one waits."""
        try:
            return self._inbox.get_nowait()
        except queue.Empty:
            return None

    def let_go_of_waiting(self, db: Database) -> int:
        """At shutdown, once the workers stopped: operations handed over but never taken become claimable at
        once (by the next worker to start) instead of when their lease expires."""
        count = 0
        while (handed := self.take()) is not None:
            operation, owner = handed
            with db.unit_of_work() as uow:
                count += uow.operations.let_go(operation.id, owner)
        return count

    @contextmanager
    def idle(self) -> Iterator[None]:
        """Counts the calling worker as idle (ready for a hand-over) while it waits."""
        with self._lock:
            self._idle += 1
        try:
            yield
        finally:
            with self._lock:
                self._idle -= 1

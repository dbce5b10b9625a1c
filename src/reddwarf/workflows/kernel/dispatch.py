"""Hand-over: an operation recorded in this process goes straight to one of its idle workers.

A use case about to record an operation asks for a `Promise`: it reserves one worker that is waiting for
work right now (and accepts that kind), so that worker neither claims anything else nor runs its periodic
tasks until the promise is kept or broken. The operation is then written already leased to the promise's
own owner id (state running, attempt 1) in the use case's transaction; once that transaction has
committed the promise hands the operation to the reserved worker (`fulfil`), and if it rolls back the
worker is released (`abandon`). The worker runs the operation under that lease: no claim transaction (on
SQLite, the store's write lock, taken just as the API answers), no candidate query, no journal read (a
new operation has none) between the tenant's request and the work.

Durability is unchanged: the operation is in the store, leased for `lease_ttl` like any claimed one.
Should this process die before its worker started it, the lease expires and any worker claims it, as when
a worker dies mid-operation. With no worker waiting (all busy, or none in this process) there is no
promise: the operation is recorded pending and claimed as usual.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reddwarf.store.records import Operation

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Handed:
    """An operation handed over to a worker, with the lease it was recorded under."""

    operation: Operation
    owner: str
    ttl: float


class _Seat:
    """One worker waiting for work. Its fields change only under the dispatcher's lock."""

    __slots__ = ("accepts", "handed", "reserved", "wakeup")

    def __init__(self, accepts: Callable[[str], bool], lock: threading.Lock) -> None:
        self.accepts = accepts
        self.wakeup = threading.Condition(lock)
        self.reserved = False
        self.handed: Handed | None = None


class Promise:
    """A reserved worker, waiting for the operation a use case is recording under `owner`'s lease."""

    def __init__(self, dispatcher: Dispatcher, seat: _Seat, owner: str, ttl: float) -> None:
        self._dispatcher = dispatcher
        self._seat = seat
        self.owner = owner
        self.ttl = ttl

    def fulfil(self, operation: Operation) -> None:
        """The transaction that recorded `operation` (leased to `owner`) committed: the worker runs it."""
        with self._dispatcher.lock:
            self._seat.handed = Handed(operation, self.owner, self.ttl)
            self._seat.wakeup.notify()

    def abandon(self) -> None:
        """Nothing was recorded after all: the worker goes back to its own round."""
        with self._dispatcher.lock:
            self._seat.reserved = False
            self._seat.wakeup.notify()


class Dispatcher:
    """This process's waiting workers, and the promises made on their behalf."""

    def __init__(self, process_id: str, lease_ttl: float) -> None:
        self.lock = threading.Lock()
        self._process_id = process_id
        self._lease_ttl = lease_ttl
        self._waiting: list[_Seat] = []
        self._closed = False
        self._numbers = itertools.count(1)
        # Counts notifications: a worker that read it before looking for work, and finds it moved when it is
        # about to wait, looks again instead (a notification is never lost between its look and its wait).
        self._generation = 0

    @property
    def generation(self) -> int:
        """Read before a worker looks for work; pass to `wait` as `since`."""
        with self.lock:
            return self._generation

    @property
    def waiting(self) -> int:
        """How many workers wait for work, unreserved."""
        with self.lock:
            return len(self._waiting)

    # --- the use case's side ---

    def promise(self, kind: str) -> Promise | None:
        """Reserve a waiting worker that takes `kind`; None when none waits (or the workers are stopping)."""
        with self.lock:
            if self._closed:
                return None
            seat = next((s for s in self._waiting if s.accepts(kind)), None)
            if seat is None:
                return None
            self._waiting.remove(seat)
            seat.reserved = True
            # Unique per hand-over: a lease is matched by its owner, and no two operations may share one.
            owner = f"{self._process_id}:h{next(self._numbers)}"
        return Promise(self, seat, owner, self._lease_ttl)

    def notify(self, kind: str = "") -> None:
        """Pending work of `kind` ("": of any kind) was recorded, here or (LISTEN / NOTIFY) elsewhere: the
        waiting workers that take it go and claim, and a worker about to wait looks again first."""
        with self.lock:
            self._generation += 1
            for seat in self._waiting:
                if not kind or seat.accepts(kind):
                    seat.wakeup.notify()

    def close(self) -> None:
        """The workers are stopping: no more promises, and every waiting worker wakes."""
        with self.lock:
            self._closed = True
            self._generation += 1
            for seat in self._waiting:
                seat.wakeup.notify()

    # --- the workers' side ---

    def wait(self, accepts: Callable[[str], bool], timeout: float, *, since: int) -> Handed | None:
        """Wait up to `timeout` seconds (less if pending work is recorded) for work; a handed-over operation
        if a promise was made for this worker and kept, else None (go and claim). Returns at once when a
        notification came after `generation` read `since`."""
        with self.lock:
            if self._closed or self._generation != since:
                return None
            seat = _Seat(accepts, self.lock)
            self._waiting.append(seat)
            seat.wakeup.wait(timeout)
            if seat in self._waiting:  # not reserved: woken by recorded work, a stop, or the poll's timeout
                self._waiting.remove(seat)
                return None
            # Reserved: the use case's transaction is about to commit or roll back. It cannot take longer
            # than the lease it was given; past that, the operation (if any) is claimable anyway.
            deadline = time.monotonic() + self._lease_ttl
            while seat.reserved and seat.handed is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.error("a use case reserved a worker and neither handed over nor abandoned; going on")
                    return None
                seat.wakeup.wait(remaining)
            return seat.handed

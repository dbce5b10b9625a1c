"""A leased observation loop: check every item on an interval, a bounded number at once, in one process.

The health of instances is observed apart from operations (the workers' loop never waits on a probe, and
an operation never waits on the health pass). `Observer.run` is the loop of one thread of its own:

- It runs only while this process holds the store's named lease (`leases` table): with several API and
  worker processes on one store, one of them observes; when it dies, another takes over once the lease
  expires (`lease_ttl`, a few intervals). The holder renews it every third of its TTL, not every round.
- Every `interval` seconds it calls `check(item)` for each current item, in its own thread: the check's
  first look must be cheap and never block (at rest, most checks end there). When more is due (a probe,
  a store write) the check returns it, and it runs on a pool of `concurrency` threads. A follow-up that
  is still running (a probe stuck on a hung server until its timeout) keeps its item out of the next
  rounds until it ends: one slow item costs one thread, never the other items' turn.
  The time from a change to its detection is thus at most `interval` plus one check's own timeout, as long
  as fewer than `concurrency` checks are stuck at once.
- `wake(key)` (from any thread: e.g. the runtime's news that a server exited) has the loop look at that
  item at once, between rounds (or as soon as its running follow-up ends): such a change is seen in
  milliseconds, not within an interval.
- A check raising is logged and the loop goes on (the loop boundary); a store outage skips a round.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from reddwarf.domain.errors import StoreUnavailable
from reddwarf.store.database import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class ObserverSettings:
    lease: str
    interval: float
    concurrency: int
    lease_ttl: float


class Observer(Generic[K, T]):
    """Runs `check` over `items()` (key, item) pairs on an interval while holding the lease (module doc)."""

    def __init__(
        self, db: Database, settings: ObserverSettings, owner: str, items: Callable[[], Iterable[tuple[K, T]]],
        check: Callable[[T], Callable[[], None] | None],
    ) -> None:
        self.db = db
        self.settings = settings
        self.owner = owner
        self._items = items
        self._check = check
        self._in_flight: dict[K, tuple[Future[None], float]] = {}
        self._holding = False
        self._held_at = -math.inf
        self._warned: set[K] = set()
        # The last round's items (what a wake-up looks at), and the keys woken since.
        self._current: dict[K, T] = {}
        self._woken: set[K] = set()
        self._woken_lock = threading.Lock()
        self._alarm = threading.Event()

    @property
    def holding(self) -> bool:
        """Whether this process observed in its last round."""
        return self._holding

    def wake(self, key: K) -> None:
        """Look at `key` now rather than at the next round (thread-safe, returns at once)."""
        with self._woken_lock:
            self._woken.add(key)
        self._alarm.set()

    def interrupt(self) -> None:
        """End the current wait (the process is stopping: `run` then sees its stop event)."""
        self._alarm.set()

    def run(self, stop: threading.Event) -> None:
        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix=f"{self.settings.lease}")
        log.info("%s observer %s started", self.settings.lease, self.owner)
        next_round = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() >= next_round:
                        next_round = time.monotonic() + self.settings.interval
                        self.round(pool)
                    else:
                        self.look_at_woken(pool)
                except StoreUnavailable:
                    self._holding = False  # logged by the store; try again next round
                except Exception:  # loop boundary
                    log.exception("%s observer: unexpected error in the loop", self.settings.lease)
                self._alarm.wait(max(0.0, next_round - time.monotonic()))
                self._alarm.clear()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if self._holding:
                try:
                    with self.db.unit_of_work() as uow:
                        uow.leases.release(self.settings.lease, self.owner)
                except StoreUnavailable:
                    pass  # it expires by itself
            log.info("%s observer %s stopped", self.settings.lease, self.owner)

    def round(self, pool: ThreadPoolExecutor) -> int:
        """One round: renew the lease when due, then look at every item not still being followed up. Returns
        how many follow-ups were submitted (0 when another process holds the lease)."""
        if not self._hold():
            return 0
        self._reap_follow_ups()
        self._current = dict(self._items())
        with self._woken_lock:  # every item is looked at now, but those still followed up
            self._woken = {key for key in self._woken if key in self._in_flight}
        return self._look(pool, self._current.items())

    def look_at_woken(self, pool: ThreadPoolExecutor) -> int:
        """Between rounds: look at the items woken since (those still followed up stay woken until it ends)."""
        with self._woken_lock:
            woken, self._woken = self._woken, set()
        if not woken or not self._holding:
            return 0
        self._reap_follow_ups()
        busy = {key for key in woken if key in self._in_flight}
        if busy:
            with self._woken_lock:
                self._woken |= busy
        return self._look(pool, [(key, self._current[key]) for key in woken - busy if key in self._current])

    def _hold(self) -> bool:
        """Take or renew the lease; a holder renews every third of its TTL, not every round."""
        now = time.monotonic()
        if self._holding and now - self._held_at < self.settings.lease_ttl / 3:
            return True
        with self.db.unit_of_work() as uow:
            holding = uow.leases.hold(self.settings.lease, self.owner, self.settings.lease_ttl)
        if holding != self._holding:
            log.info("%s observer %s %s the lease", self.settings.lease, self.owner,
                     "took" if holding else "does not hold")
        self._holding = holding
        self._held_at = now if holding else -math.inf
        return holding

    def _reap_follow_ups(self) -> None:
        now = time.monotonic()
        for key, (future, since) in list(self._in_flight.items()):
            if future.done():
                del self._in_flight[key]
                self._warned.discard(key)
            elif now - since > 3 * self.settings.interval and key not in self._warned:
                self._warned.add(key)
                log.warning("%s check of %s still running after %.1f s", self.settings.lease, key, now - since)

    def _look(self, pool: ThreadPoolExecutor, items: Iterable[tuple[K, T]]) -> int:
        now = time.monotonic()
        submitted = 0
        for key, item in items:
            if key in self._in_flight:
                continue
            try:
                follow_up = self._check(item)
            except StoreUnavailable:
                raise  # the whole round waits for the store
            except Exception:  # loop boundary: one broken item must not stop the others
                log.exception("%s check of %s failed", self.settings.lease, key)
                continue
            if follow_up is not None:
                future = pool.submit(self._guarded, key, follow_up)
                self._in_flight[key] = (future, now)
                future.add_done_callback(functools.partial(self._ended, key))
                submitted += 1
        return submitted

    def _ended(self, key: K, _done: Future[None]) -> None:
        """A follow-up ended: if its item was woken meanwhile, look at it now rather than at the next round."""
        with self._woken_lock:
            woken = key in self._woken
        if woken:
            self._alarm.set()

    def _guarded(self, key: K, follow_up: Callable[[], None]) -> None:
        try:
            follow_up()
        except StoreUnavailable:
            pass  # logged by the store
        except Exception:  # loop boundary: one broken item must not stop the others
            log.exception("%s check of %s failed", self.settings.lease, key)

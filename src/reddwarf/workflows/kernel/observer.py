"""A leased observation loop: check every item on an interval, a bounded number at once, in one process.

The health of instances is observed apart from operations (the workers' loop never waits on a probe, and
an operation never waits on the health pass). `Observer.run` is the loop of one thread of its own:

- It runs only while this process holds the store's named lease (`leases` table): with several API and
  worker processes on one store, one of them observes; when it dies, another takes over once the lease
  expires (`lease_ttl`, a few intervals).
- Every `interval` seconds it calls `check(item)` for each current item, in its own thread: the check's
  first look must be cheap and never block (at rest, most checks end there). When more is due (a probe,
  a store write) the check returns it, and it runs on a pool of `concurrency` threads. A follow-up that
  is still running (a probe stuck on a hung server until its timeout) keeps its item out of the next
  rounds until it ends: one slow item costs one thread, never the other items' turn.
  The time from a change to its detection is thus at most `interval` plus one check's own timeout, as long
  as fewer than `concurrency` checks are stuck at once.
- A check raising is logged and the loop goes on (the loop boundary); a store outage skips a round.
"""

from __future__ import annotations

import logging
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
        self._warned: set[K] = set()

    @property
    def holding(self) -> bool:
        """Whether this process observed in its last round."""
        return self._holding

    def run(self, stop: threading.Event) -> None:
        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix=f"{self.settings.lease}")
        log.info("%s observer %s started", self.settings.lease, self.owner)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.round(pool)
                except StoreUnavailable:
                    self._holding = False  # logged by the store; try again next round
                except Exception:  # loop boundary
                    log.exception("%s observer: unexpected error in the loop", self.settings.lease)
                stop.wait(max(0.0, self.settings.interval - (time.monotonic() - started)))
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
        """One round: renew the lease, then look at every item not still being followed up. Returns how many
        follow-ups were submitted (0 when another process holds the lease)."""
        with self.db.unit_of_work() as uow:
            holding = uow.leases.hold(self.settings.lease, self.owner, self.settings.lease_ttl)
        if holding != self._holding:
            log.info("%s observer %s %s the lease", self.settings.lease, self.owner,
                     "took" if holding else "does not hold")
        self._holding = holding
        if not holding:
            return 0
        now = time.monotonic()
        for key, (future, since) in list(self._in_flight.items()):
            if future.done():
                del self._in_flight[key]
                self._warned.discard(key)
            elif now - since > 3 * self.settings.interval and key not in self._warned:
                self._warned.add(key)
                log.warning("%s check of %s still running after %.1f s", self.settings.lease, key, now - since)
        submitted = 0
        for key, item in self._items():
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
                self._in_flight[key] = (pool.submit(self._guarded, key, follow_up), now)
                submitted += 1
        return submitted

    def _guarded(self, key: K, follow_up: Callable[[], None]) -> None:
        try:
            follow_up()
        except StoreUnavailable:
            pass  # logged by the store
        except Exception:  # loop boundary: one broken item must not stop the others
            log.exception("%s check of %s failed", self.settings.lease, key)

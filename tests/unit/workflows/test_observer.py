"""The health observer's loop (`kernel.observer`): a hung check costs its own item only, one process of
those sharing the store observes, and a woken item is looked at at once rather than at the next round."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from tests.support.server import wait_for

from reddwarf.store.database import Database
from reddwarf.workflows.kernel.observer import Observer, ObserverSettings

SETTINGS = ObserverSettings(lease="health", interval=0.02, concurrency=4, lease_ttl=0.5)


class Checks:
    """Counts checks per item; the items in `hung` block until `release` is set (a probe on a hung server)."""

    def __init__(self, hung: frozenset[str] = frozenset()) -> None:
        self.hung = hung
        self.release = threading.Event()
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, item: str) -> Callable[[], None] | None:
        """The first look (in the observer's thread): items in `hung` get a follow-up that blocks."""
        with self.lock:
            self.counts[item] += 1
        if item in self.hung:
            return lambda: self.release.wait(30) and None
        return None

    def seen(self, item: str) -> int:
        with self.lock:
            return self.counts[item]


def observer(db: Database, owner: str, checks: Checks, items: tuple[str, ...]) -> Observer[str, str]:
    return Observer(db, SETTINGS, owner, lambda: [(i, i) for i in items], checks)


@contextmanager
def running(obs: Observer[str, str]) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=obs.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        obs.interrupt()
        thread.join(10)
        assert not thread.is_alive()


def test_hung_checks_keep_only_their_own_items_waiting(db: Database) -> None:
    checks = Checks(hung=frozenset({"stopped-1", "stopped-2", "stopped-3"}))
    items = ("stopped-1", "stopped-2", "stopped-3", "healthy-a", "healthy-b")
    with running(observer(db, "p1", checks, items)):
        wait_for(lambda: checks.seen("healthy-a") >= 20 and checks.seen("healthy-b") >= 20, 30,
                 "the healthy instances to be checked round after round")
        assert [checks.seen(f"stopped-{n}") for n in (1, 2, 3)] == [1, 1, 1]  # never piled up behind themselves
        checks.release.set()
        wait_for(lambda: checks.seen("stopped-1") >= 2, 30, "a check that ended to be scheduled again")


def test_one_process_observes_and_another_takes_over_when_it_stops(db: Database) -> None:
    first, second = Checks(), Checks()
    one = observer(db, "p1", first, ("i1",))
    with running(one) as stop_one:
        wait_for(lambda: first.seen("i1") >= 3, 30, "the first process to observe")
        with running(observer(db, "p2", second, ("i1",))):
            wait_for(lambda: first.seen("i1") >= 10, 30, "the first process to go on observing")
            assert second.seen("i1") == 0  # the lease is the first one's
            stop_one.set()  # it stops and gives the lease up
            wait_for(lambda: second.seen("i1") >= 3, 30, "the second process to take over")


# Rounds far apart: anything looked at again within a test's deadline was looked at because it was woken.
SLOW = ObserverSettings(lease="health", interval=60.0, concurrency=4, lease_ttl=180.0)


def test_a_woken_item_is_looked_at_at_once_not_at_the_next_round(db: Database) -> None:
    checks = Checks()
    obs = Observer(db, SLOW, "p1", lambda: [("a", "a"), ("b", "b")], checks)
    with running(obs):
        wait_for(lambda: checks.seen("a") == 1 and checks.seen("b") == 1, 30, "the first round")
        obs.wake("a")
        wait_for(lambda: checks.seen("a") == 2, 10, "the woken item to be looked at")
        obs.wake("a")
        obs.wake("unknown")  # not an item (any more): nothing to look at
        wait_for(lambda: checks.seen("a") == 3, 10, "the woken item to be looked at again")
        assert checks.seen("b") == 1


def test_an_item_woken_while_its_follow_up_runs_is_looked_at_when_it_ends(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = Checks(hung=frozenset({"a"}))
    obs = Observer(db, SLOW, "p1", lambda: [("a", "a")], checks)
    looked = threading.Event()
    look_at_woken = obs.look_at_woken

    def spied(pool: ThreadPoolExecutor) -> int:
        submitted = look_at_woken(pool)
        looked.set()
        return submitted

    monkeypatch.setattr(obs, "look_at_woken", spied)
    with running(obs):
        wait_for(lambda: checks.seen("a") == 1, 30, "the first round")
        obs.wake("a")  # e.g. its server exited while a probe of it hangs
        assert looked.wait(10)  # the loop woke, found the item still followed up, and left it woken
        assert checks.seen("a") == 1
        checks.release.set()  # the probe ends
        wait_for(lambda: checks.seen("a") == 2, 10, "the item to be looked at once its follow-up ended")

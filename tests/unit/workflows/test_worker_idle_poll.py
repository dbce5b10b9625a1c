"""An idle worker looks at the store ever less often, up to once a second: at rest its poll is the control
plane's largest fixed cost (work recorded in the process wakes it at once anyway). Real SQLite store."""

from __future__ import annotations

import threading

import pytest

from reddwarf.store.database import Database
from reddwarf.workflows.kernel.worker import IDLE_POLL_MAX_S, Worker


class CountedWaits:
    """Stands in for the worker's wake-up event: records each wait's timeout, stops the worker after `limit`."""

    def __init__(self, stop: threading.Event, limit: int) -> None:
        self.stop = stop
        self.limit = limit
        self.timeouts: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.timeouts.append(timeout)
        if len(self.timeouts) >= self.limit:
            self.stop.set()
        return False

    def clear(self) -> None:
        pass


def test_an_idle_worker_polls_less_and_less_often_up_to_a_second(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(db, {}, lease_ttl=30, poll_interval=0.1, deadline=900)
    stop = threading.Event()
    waits = CountedWaits(stop, limit=7)
    monkeypatch.setattr(worker, "_wake", waits)
    worker.run(stop)
    assert waits.timeouts == pytest.approx([0.1, 0.2, 0.4, 0.8, IDLE_POLL_MAX_S, IDLE_POLL_MAX_S, IDLE_POLL_MAX_S])


def test_a_worker_polling_more_rarely_than_the_cap_keeps_its_interval(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(db, {}, lease_ttl=30, poll_interval=60.0, deadline=900)
    stop = threading.Event()
    waits = CountedWaits(stop, limit=3)
    monkeypatch.setattr(worker, "_wake", waits)
    worker.run(stop)
    assert waits.timeouts == [60.0, 60.0, 60.0]

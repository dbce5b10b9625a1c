"""A steady writer for switchover and failover tests: numbers 1, 2, 3, ... written one per transaction (or command)
on whichever member of a set takes writes, as fast as the server acknowledges, counting each acknowledged one.

It tries the members in turn when its member refuses (an error of `errors`). A number the member committed but
never acknowledged (a stopping primary cut the connection after its commit) is found on the next member as a
duplicate (`duplicates`) and skipped: there, just not counted."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from reddwarf.client import Instance
from tests.support.server import wait_for

Connection = TypeVar("Connection")


class Writer(Generic[Connection]):
    def __init__(
        self, members: list[Instance], connect: Callable[[Instance], Connection],
        write: Callable[[Connection, int], Any], close: Callable[[Connection], Any],
        errors: tuple[type[BaseException], ...], duplicates: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.members = members
        self._connect, self._write, self._close = connect, write, close
        self._errors, self._duplicates = errors, duplicates
        self.acknowledged: list[int] = []
        # When each acknowledgment arrived (time.monotonic), in order.
        self.acked_at: list[float] = []
        self.refused = 0
        self.errors: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer[Connection]:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            for member in self.members:
                if self._stop.is_set():
                    return
                try:
                    conn = self._connect(member)
                    try:
                        while not self._stop.is_set():
                            self._write(conn, n + 1)
                            n += 1
                            self.acknowledged.append(n)
                            self.acked_at.append(time.monotonic())
                    finally:
                        self._close(conn)
                except self._duplicates:
                    n += 1
                except self._errors as exc:
                    self.refused += 1
                    self.errors.add(f"{member.id}: {exc}"[:200])
                    time.sleep(0.01)

    def wait_for_more(self, count: int, timeout: float = 60.0) -> None:
        goal = len(self.acknowledged) + count
        wait_for(lambda: len(self.acknowledged) >= goal, timeout,
                 f"{count} more acknowledged writes (refusals: {sorted(self.errors)})")

    def longest_gap(self, since: float) -> float:
        """The longest time between two acknowledgments after `since` (time.monotonic): the outage a client saw."""
        times = [t for t in self.acked_at if t >= since]
        before = [t for t in self.acked_at if t < since]
        if before:
            times.insert(0, before[-1])
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

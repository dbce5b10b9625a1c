"""A clock a test moves by hand: `clock.now += 60` instead of sleeping."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    """Callable like `time.time`; returns `now` until a test changes it."""

    now: float = 1_795_000_000.0

    def __call__(self) -> float:
        return self.now

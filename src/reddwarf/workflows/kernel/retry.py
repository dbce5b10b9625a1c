"""Backoff for temporary errors: exponential with a cap, deterministic (no jitter needed with leases)."""

from __future__ import annotations


def backoff(attempts: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Delay before the next attempt after `attempts` failed ones (1 -> base, doubling, capped)."""
    if attempts <= 1:
        return base
    return float(min(cap, base * 2.0 ** (attempts - 1)))

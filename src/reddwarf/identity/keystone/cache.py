"""A bounded, thread-safe cache of token validations, keyed by the token's sha256 (never the token).

An entry lives until the earlier of `ttl` seconds after it was stored and the token's own `expires_at`;
past that it is gone, so a revoked token stops working within `ttl` and an expired one at once. When full,
the least recently used entry is dropped. Times are wall-clock epoch seconds (Keystone's `expires_at` is).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def token_key(token: str) -> str:
    """The cache key of a token: its sha256, so a memory dump of the cache yields no usable token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    until: float


class ValidationCache(Generic[T]):
    """LRU of at most `max_size` entries; `get` answers None for a missing or expired entry."""

    def __init__(self, ttl: float, max_size: int, *, clock: Callable[[], float] = time.time) -> None:
        if ttl <= 0 or max_size <= 0:
            raise ValueError("ttl and max_size must be positive")
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> T | None:
        key = token_key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.until <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry.value

    def put(self, token: str, value: T, expires_at: float) -> None:
        """Remember `value` until min(now + ttl, expires_at); an already expired token is not stored."""
        now = self._clock()
        until = min(now + self.ttl, expires_at)
        if until <= now:
            return
        key = token_key(token)
        with self._lock:
            self._entries[key] = _Entry(value, until)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token_key(token), None)

    def keys(self) -> list[str]:
        """The stored keys (hashes), oldest first; for tests and diagnostics."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

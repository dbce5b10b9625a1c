"""The validation cache: an entry lives until the earlier of its TTL and the token's expiry; bounded; hashed keys."""

from __future__ import annotations

import hashlib

import pytest
from tests.fakes.clock import FakeClock

from reddwarf.identity.keystone.cache import ValidationCache, token_key


def test_an_entry_lives_for_the_ttl_when_the_token_outlives_it() -> None:
    clock = FakeClock(now=1000.0)
    cache: ValidationCache[str] = ValidationCache(ttl=60, max_size=10, clock=clock)
    cache.put("tok", "ctx", expires_at=clock.now + 3600)

    clock.now += 59.9
    assert cache.get("tok") == "ctx"
    clock.now += 0.2
    assert cache.get("tok") is None


def test_an_entry_ends_with_the_token_when_the_token_expires_first() -> None:
    clock = FakeClock(now=1000.0)
    cache: ValidationCache[str] = ValidationCache(ttl=60, max_size=10, clock=clock)
    cache.put("tok", "ctx", expires_at=clock.now + 5)

    clock.now += 4.9
    assert cache.get("tok") == "ctx"
    clock.now += 0.2
    assert cache.get("tok") is None


def test_an_already_expired_token_is_not_stored() -> None:
    clock = FakeClock(now=1000.0)
    cache: ValidationCache[str] = ValidationCache(ttl=60, max_size=10, clock=clock)
    cache.put("tok", "ctx", expires_at=clock.now - 1)

    assert cache.get("tok") is None
    assert len(cache) == 0


def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    cache: ValidationCache[int] = ValidationCache(ttl=60, max_size=3, clock=FakeClock(now=1000.0))
    for n in range(3):
        cache.put(f"t{n}", n, expires_at=10_000)
    assert cache.get("t0") == 0  # t0 is now the most recently used

    cache.put("t3", 3, expires_at=10_000)

    assert len(cache) == 3
    assert cache.get("t1") is None
    assert [cache.get(t) for t in ("t0", "t2", "t3")] == [0, 2, 3]


def test_keys_are_sha256_of_the_token_never_the_token() -> None:
    cache: ValidationCache[str] = ValidationCache(ttl=60, max_size=10, clock=FakeClock(now=1000.0))
    token = "gAAAAABsecret-token-value"
    cache.put(token, "ctx", expires_at=10_000)

    assert cache.keys() == [hashlib.sha256(token.encode()).hexdigest()]
    assert token_key(token) == cache.keys()[0]
    assert not any(token in key for key in cache.keys())  # noqa: SIM118 -- keys() is the cache's own method


def test_discard_forgets_a_token() -> None:
    cache: ValidationCache[str] = ValidationCache(ttl=60, max_size=10, clock=FakeClock(now=1000.0))
    cache.put("tok", "ctx", expires_at=10_000)
    cache.discard("tok")
    assert cache.get("tok") is None


@pytest.mark.parametrize(("ttl", "size"), [(0, 10), (60, 0)])
def test_nonsense_limits_are_refused(ttl: float, size: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        ValidationCache(ttl=ttl, max_size=size)

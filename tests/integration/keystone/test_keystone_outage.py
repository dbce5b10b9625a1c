"""Keystone down: a cached validation holds until its TTL; an uncached token gets 503, never a pass."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from keystone_support import CACHE_TTL, Cloud
from tests.support.server import ReddwarfProcesses, wait_for


@pytest.fixture
def tokens(cloud: Cloud, reddwarf: ReddwarfProcesses) -> Iterator[tuple[str, str]]:
    """(a token Reddwarf has validated, one it has never seen), then Keystone is stopped; restarted after."""
    cached, fresh = cloud.token(cloud.alice), cloud.token(cloud.alice)
    assert status(reddwarf, cloud, cached) == 200
    cloud.keystone.stop()
    try:
        yield cached, fresh
    finally:
        cloud.keystone.start()


def status(reddwarf: ReddwarfProcesses, cloud: Cloud, token: str) -> int:
    response = httpx.get(f"{reddwarf.url}/v1.0/{cloud.alice.project_id}/instances",
                         headers={"X-Auth-Token": token}, timeout=30)
    if response.status_code == 503:
        assert response.json()["serviceUnavailable"]["message"].startswith("The identity service (Keystone)")
    return response.status_code


def test_keystone_down(cloud: Cloud, reddwarf: ReddwarfProcesses, tokens: tuple[str, str]) -> None:
    cached, fresh = tokens

    assert status(reddwarf, cloud, fresh) == 503
    assert status(reddwarf, cloud, cached) == 200
    wait_for(lambda: status(reddwarf, cloud, cached) == 503, CACHE_TTL + 10,
             "the cached validation to expire", interval=0.25)
    assert status(reddwarf, cloud, fresh) == 503


def test_keystone_back(cloud: Cloud, reddwarf: ReddwarfProcesses) -> None:
    assert status(reddwarf, cloud, cloud.token(cloud.alice)) == 200

"""Fixtures of the pure client and CLI tests: a scripted API and a client wired to it."""

from __future__ import annotations

import httpx
import pytest
from tests.fakes.api import ENDPOINT, PROJECT, TOKEN, FakeApi, fault_response

from reddwarf.client import ReddwarfClient


@pytest.fixture
def fake_api() -> FakeApi:
    return FakeApi(handler=lambda request: fault_response(404, "itemNotFound", "no handler"))


@pytest.fixture
def client(fake_api: FakeApi) -> ReddwarfClient:
    return ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(fake_api))

"""Fixtures for the API integration tests (see `api_support` for the fake engine and the `Api` handle)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import Api, build_api, create_body, migrated_template


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("store-template"))


@pytest.fixture
def api(tmp_path: Path, store_template: Path) -> Iterator[Api]:
    yield from build_api(tmp_path, template=store_template)


@pytest.fixture
def new_instance(api: Api) -> str:
    response = api.post("/instances", create_body())
    assert response.status_code == 200, response.text
    return str(response.json()["instance"]["id"])

"""Identity at the API: public routes, 401 for bad tokens, 403 for another project's path, noauth mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import Api, build_api

from reddwarf.identity.tokens import hash_token, issue_token


@pytest.mark.parametrize("path", ["/", "/v1.0/", "/healthcheck", "/openapi.json", "/docs"])
def test_public_routes_need_no_token(api: Api, path: str) -> None:
    response = api.client.get(path)

    assert response.status_code == 200
    assert response.headers["X-OpenStack-Request-Id"].startswith("req-")


def test_missing_token_is_401(api: Api) -> None:
    response = api.client.get(api.url("/instances"))

    assert response.status_code == 401
    assert response.json()["unauthorized"]["code"] == 401


def test_unknown_token_is_401(api: Api) -> None:
    response = api.client.get(api.url("/instances"), headers={"X-Auth-Token": "not-a-token"})

    assert response.status_code == 401
    assert "unauthorized" in response.json()


def test_expired_token_is_401(api: Api) -> None:
    _, token = issue_token(api.db, api.project, ("member",), ttl=60.0)
    headers = {"X-Auth-Token": token.reveal()}
    api.clock.now = 4_000_000_000.0  # issued with the wall clock; the API's clock is long past its expiry

    response = api.client.get(api.url("/instances"), headers=headers)

    assert response.status_code == 401


def test_a_token_works_until_it_expires(api: Api) -> None:
    record, token = issue_token(api.db, api.project, ("member",), ttl=60.0)
    assert record.expires_at is not None
    headers = {"X-Auth-Token": token.reveal()}

    api.clock.now = record.expires_at - 1
    assert api.client.get(api.url("/instances"), headers=headers).status_code == 200
    api.clock.now = record.expires_at + 1
    assert api.client.get(api.url("/instances"), headers=headers).status_code == 401


def test_revoked_token_is_401(api: Api) -> None:
    record, token = issue_token(api.db, api.project, ("member",), ttl=None)
    headers = {"X-Auth-Token": token.reveal()}
    assert api.client.get(api.url("/instances"), headers=headers).status_code == 200
    with api.db.unit_of_work() as uow:
        assert uow.identity.revoke_token(record.id)

    response = api.client.get(api.url("/instances"), headers=headers)

    assert response.status_code == 401


def test_tokens_are_stored_hashed_only(api: Api) -> None:
    token = api.tokens["member"]

    assert token.encode() not in api.db_path.read_bytes()
    assert api.count("tokens", "token_hash = ?", hash_token(token)) == 1


@pytest.mark.parametrize("who", ["member", "admin"])
def test_a_path_project_other_than_the_token_project_is_403_for_admins_too(api: Api, who: str) -> None:
    response = api.get("/instances", who=who, project=api.other_project)

    assert response.status_code == 403
    assert response.json()["forbidden"]["code"] == 403


def test_a_bad_token_is_401_before_the_project_check(api: Api) -> None:
    response = api.client.get(api.url("/instances", api.other_project), headers={"X-Auth-Token": "nope"})

    assert response.status_code == 401


@pytest.fixture
def noauth_api(tmp_path: Path, store_template: Path) -> Iterator[Api]:
    yield from build_api(tmp_path, template=store_template, identity="noauth")


def test_noauth_makes_every_request_an_admin_of_the_path_project(
    noauth_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    response = noauth_api.client.post(
        "/v1.0/anyproject/instances",
        json={"instance": {"name": "x", "flavorRef": 1, "volume": {"size": 1}}},
        headers={"X-Auth-Token": "notused"},
    )

    assert response.status_code == 200
    assert response.json()["instance"]["tenant_id"] == "anyproject"
    warnings = [r for r in caplog.get_records("setup") if r.levelname == "WARNING"]
    assert any("noauth" in r.getMessage() for r in warnings)

"""Keystone tokens at Reddwarf's API: Trove's tenant rule, expiry, revocation and bad tokens."""

from __future__ import annotations

import time

import httpx
from keystone_support import CACHE_TTL, SHORT_EXPIRATION, Cloud
from tests.support.server import ReddwarfProcesses, wait_for


def get(reddwarf: ReddwarfProcesses, project_id: str, token: str | None, path: str = "/instances") -> httpx.Response:
    headers = {} if token is None else {"X-Auth-Token": token}
    return httpx.get(f"{reddwarf.url}/v1.0/{project_id}{path}", headers=headers, timeout=30)


def test_a_member_reaches_its_own_project(cloud: Cloud, reddwarf: ReddwarfProcesses) -> None:
    token = cloud.token(cloud.alice)

    response = get(reddwarf, cloud.alice.project_id, token)

    assert response.status_code == 200
    assert response.json() == {"instances": []} or "instances" in response.json()


def test_a_token_of_project_a_on_project_bs_path_is_403(cloud: Cloud, reddwarf: ReddwarfProcesses) -> None:
    response = get(reddwarf, cloud.bob.project_id, cloud.token(cloud.alice))

    assert response.status_code == 403
    assert response.json()["forbidden"]["code"] == 403


def test_an_admin_token_on_another_projects_path_is_403_too(cloud: Cloud, reddwarf: ReddwarfProcesses) -> None:
    response = get(reddwarf, cloud.bob.project_id, cloud.token(cloud.admin))

    assert response.status_code == 403


def test_missing_and_unknown_tokens_are_401(cloud: Cloud, reddwarf: ReddwarfProcesses) -> None:
    assert get(reddwarf, cloud.alice.project_id, None).status_code == 401
    response = get(reddwarf, cloud.alice.project_id, "gAAAAABnot-a-real-fernet-token")
    assert response.status_code == 401
    assert response.json()["unauthorized"]["code"] == 401


def test_a_builtin_token_means_nothing_in_keystone_mode(reddwarf: ReddwarfProcesses) -> None:
    assert get(reddwarf, reddwarf.project_id, reddwarf.token).status_code == 401


def test_an_expired_token_is_refused(cloud: Cloud, reddwarf: ReddwarfProcesses) -> None:
    token = cloud.token(cloud.alice, short=True)  # issued by the twin whose tokens live SHORT_EXPIRATION s
    assert get(reddwarf, cloud.alice.project_id, token).status_code == 200

    wait_for(lambda: get(reddwarf, cloud.alice.project_id, token).status_code == 401, SHORT_EXPIRATION + 20,
             "the expired token to be refused", interval=0.5)


def test_a_revoked_token_stops_working_within_the_cache_ttl(cloud: Cloud, reddwarf: ReddwarfProcesses) -> None:
    token = cloud.token(cloud.alice)
    assert get(reddwarf, cloud.alice.project_id, token).status_code == 200  # now cached

    cloud.revoke(token)
    revoked_at = time.monotonic()

    wait_for(lambda: get(reddwarf, cloud.alice.project_id, token).status_code == 401, CACHE_TTL + 20,
             "the revoked token to be refused", interval=0.25)
    assert time.monotonic() - revoked_at <= CACHE_TTL + 2

"""One tenant cannot stall the others (issue 11, point 7): a tenant who suspends its own servers (SIGSTOP:
alive, holding its port, answering nothing) costs another tenant's create and live reads nothing, and its
own live reads answer 503 at once instead of holding an API thread for a timeout.

The old design ran the health sweep inside the worker's loop, one instance at a time with 2 s probes: with
eight suspended servers every pass held the only worker ~16 s, and a create recorded meanwhile waited for
it. Health is now observed by its own loop, which reads a suspended server's state from /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.contract.host import listener_pid
from tests.support.server import REDDWARF, ReddwarfProcesses, running_plane, wait_for

SUSPENDED = 8
# A Redis create answers in ~0.1 s and is ACTIVE well under a second here; the old sweep held the only
# worker ~16 s per pass with eight suspended servers.
CREATE_DEADLINE = 10


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("noisy", "127.0.88.0/24", REDDWARF_HEALTH_INTERVAL="0.5") as procs:
        yield procs


def second_tenant(plane: ReddwarfProcesses) -> httpx.Client:
    env = plane.env()
    subprocess.run([REDDWARF, "project", "create", "quiet-tenant", "--id", "pquiet"], env=env, check=True,
                   capture_output=True)
    issued = subprocess.run([REDDWARF, "token", "create", "--project", "pquiet", "--json"], env=env, check=True,
                            capture_output=True, text=True)
    token = json.loads(issued.stdout)["token"]
    return httpx.Client(base_url=f"{plane.url}/v1.0/pquiet", headers={"X-Auth-Token": token}, timeout=30)


def create_redis(client: httpx.Client, name: str) -> str:
    body = {"instance": {"name": name, "flavorRef": "1", "volume": {"size": 1},
                         "datastore": {"type": "redis", "version": "7.0"},
                         "users": [{"name": "app", "password": "app password"}]}}
    response = client.post("/instances", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["instance"]["id"])


def view(client: httpx.Client, instance_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/instances/{instance_id}").json()["instance"]
    return found


def active(client: httpx.Client, instance_id: str, timeout: float = 120) -> dict[str, Any]:
    shown: dict[str, Any] = wait_for(lambda: (v := view(client, instance_id))["status"] == "ACTIVE" and v,
                                     timeout, f"instance {instance_id} to be ACTIVE")
    return shown


def test_suspended_servers_of_one_tenant_stall_no_other(plane: ReddwarfProcesses) -> None:
    with plane.client() as noisy:
        _scenario(plane, noisy)


def _scenario(plane: ReddwarfProcesses, noisy: httpx.Client) -> None:
    ids = [create_redis(noisy, f"noisy-{n}") for n in range(SUSPENDED)]
    suspended = []
    try:
        for instance_id in ids:
            shown = active(noisy, instance_id)
            pid = listener_pid(shown["addresses"][0]["address"], int(shown["port"]))
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            suspended.append(pid)
        wait_for(lambda: all(view(noisy, i)["operating_status"] == "ERROR" for i in ids), 30,
                 "the suspended servers to be seen not answering")

        with second_tenant(plane) as quiet:
            instance_id = create_redis(quiet, "quiet")
            try:
                active(quiet, instance_id, timeout=CREATE_DEADLINE)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{plane.log_tail()}") from None
            users = quiet.get(f"/instances/{instance_id}/users")
            assert users.status_code == 200, users.text
            assert [u["name"] for u in users.json()["users"]] == ["app"]

        first = noisy.get(f"/instances/{ids[0]}/users")  # waits out the admin connection's timeout
        assert first.status_code == 503, first.text
        again = noisy.get(f"/instances/{ids[0]}/users")  # answered at once: the server just did not answer
        assert again.status_code == 503, again.text
        assert "not answering" in again.json()["serviceUnavailable"]["message"]
    finally:
        for pid in suspended:
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: all(view(noisy, i)["operating_status"] == "HEALTHY" for i in ids), 30,
             "the resumed servers to be seen healthy again")
    wait_for(lambda: noisy.get(f"/instances/{ids[0]}/users").status_code == 200, 30,
             "live reads of a resumed server to answer again")

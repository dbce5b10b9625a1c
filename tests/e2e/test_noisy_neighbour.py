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

import pytest

from reddwarf.client import ReddwarfAPIError, ReddwarfClient, ReddwarfClientError, UserRequest
from reddwarf.domain.secret import Secret
from tests.contract.host import listener_pid
from tests.support.server import ACTIVE_TIMEOUT, REDDWARF, ReddwarfProcesses, running_plane, wait_for

SUSPENDED = 8
# A Redis create answers in ~0.1 s and is ACTIVE well under a second here; the old sweep held the only
# worker ~16 s per pass with eight suspended servers.
CREATE_DEADLINE = 10


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("noisy", "127.0.88.0/24", REDDWARF_HEALTH_INTERVAL="0.5", REDDWARF_LOCAL_POOL_GB="16") as procs:
        yield procs


def second_tenant(plane: ReddwarfProcesses) -> ReddwarfClient:
    env = plane.env()
    subprocess.run([REDDWARF, "project", "create", "quiet-tenant", "--id", "pquiet"], env=env, check=True,
                   capture_output=True)
    issued = subprocess.run([REDDWARF, "token", "create", "--project", "pquiet", "--json"], env=env, check=True,
                            capture_output=True, text=True)
    token = json.loads(issued.stdout)["token"]
    return plane.tenant("pquiet", token)


def create_redis(client: ReddwarfClient, name: str) -> str:
    user = UserRequest(name="app", password=Secret("app password"))
    return client.create_instance(name, "1", 1, datastore="redis", version="7.0", users=[user]).id


def operating(client: ReddwarfClient, instance_id: str) -> str:
    return client.get_instance(instance_id).operating_status


def live_read_refusal(client: ReddwarfClient, instance_id: str) -> ReddwarfAPIError | None:
    """The error of a live read of the instance's users (None when it answers)."""
    try:
        client.accounts.list_users(instance_id)
    except ReddwarfAPIError as exc:
        return exc
    return None


def test_suspended_servers_of_one_tenant_stall_no_other(plane: ReddwarfProcesses) -> None:
    with plane.tenant() as noisy:
        _scenario(plane, noisy)


def _scenario(plane: ReddwarfProcesses, noisy: ReddwarfClient) -> None:
    ids = [create_redis(noisy, f"noisy-{n}") for n in range(SUSPENDED)]
    suspended = []
    try:
        for instance_id in ids:
            shown = noisy.wait_for_instance(instance_id, timeout=ACTIVE_TIMEOUT)
            assert shown.address is not None and shown.port is not None
            pid = listener_pid(shown.address, shown.port)
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            suspended.append(pid)
        wait_for(lambda: all(operating(noisy, i) == "ERROR" for i in ids), 30,
                 "the suspended servers to be seen not answering")

        with second_tenant(plane) as quiet:
            instance_id = create_redis(quiet, "quiet")
            try:
                quiet.wait_for_instance(instance_id, timeout=CREATE_DEADLINE)
            except ReddwarfClientError as exc:
                raise AssertionError(f"{exc}\n{plane.log_tail()}") from None
            assert [u.name for u in quiet.accounts.list_users(instance_id)] == ["app"]

        first = live_read_refusal(noisy, ids[0])  # waits out the admin connection's timeout
        assert first is not None and first.status == 503, first
        again = live_read_refusal(noisy, ids[0])  # answered at once: the server just did not answer
        assert again is not None and (again.status, again.fault_name) == (503, "serviceUnavailable"), again
        assert "not answering" in again.message
    finally:
        for pid in suspended:
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: all(operating(noisy, i) == "HEALTHY" for i in ids), 30,
             "the resumed servers to be seen healthy again")
    wait_for(lambda: live_read_refusal(noisy, ids[0]) is None, 30,
             "live reads of a resumed server to answer again")

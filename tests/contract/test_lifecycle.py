"""Lifecycle conformance, for every engine version: create -> ACTIVE and the tenant connects with the
engine's own client, the API shows and enforces what the version declares, the restart action, a
kill -9 of the server repaired by the health sweep, and a delete that leaves nothing on the host."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.contract import host
from tests.contract.clients import ADAPTERS
from tests.contract.conftest import Instance, Pair
from tests.contract.targets import Target
from tests.support.server import ReddwarfProcesses, wait_for

pytestmark = pytest.mark.capability("lifecycle")


def tenant_connects(instance: Instance, target: Target) -> None:
    """As the instance's first tenant user where it has one, else as nobody can: the endpoint answers."""
    address, port = instance.endpoint()
    adapter = ADAPTERS[target.engine]
    for account in instance.accounts[:1]:
        adapter.use(address, port, account.user, account.password, account.database)


def test_create_becomes_active_and_healthy_on_the_standard_port(shared: Instance, target: Target) -> None:
    view = shared.view()

    assert view["status"] == "ACTIVE" and view["operating_status"] == "HEALTHY"
    assert view["datastore"] == {"type": target.engine, "version": target.version,
                                 "version_number": target.installed.number if target.installed else ""}
    assert view["addresses"][0]["address"].startswith("127.0.93.")
    assert view["port"] == target.default_port
    pid = shared.server_pid()
    assert pid is not None, "nothing listens on the instance's endpoint"
    assert host.owner(pid) != "root"
    tenant_connects(shared, target)


def test_the_api_shows_and_enforces_what_the_version_declares(reddwarf: ReddwarfProcesses, target: Target) -> None:
    with reddwarf.client() as client:
        base = f"/datastores/{target.engine}/versions/{target.version}"
        version = client.get(base).json()["version"]
        listed = client.get(f"{base}/capabilities").json()["capabilities"]
        declared = sorted(d for d in target.declared if ":" not in d)

        assert version["capabilities"] == declared
        assert version["classification"] in {"experimental", "technical_preview", "stable"}
        assert sorted(c["name"] for c in listed if c["enabled"]) == declared
        before = len(client.get("/instances").json()["instances"])
        for capability, extra in (("users", {"users": [{"name": "zed", "password": "pw-zed"}]}),
                                  ("databases", {"databases": [{"name": "zed"}]})):
            if target.declares(capability):
                continue
            response = client.post("/instances", json={"instance": {
                "name": "refused", "flavorRef": "1", "volume": {"size": 1},
                "datastore": {"type": target.engine, "version": target.version}, **extra}})
            assert response.status_code == 400, response.text
            assert capability in response.json()["badRequest"]["message"]
        assert len(client.get("/instances").json()["instances"]) == before


def test_restart_action_restarts_the_server(shared: Instance, target: Target) -> None:
    before = shared.server_pid()
    assert before is not None

    response = shared.client.post(f"/instances/{shared.id}/action", json={"restart": {}})

    assert response.status_code == 202, response.text
    wait_for(lambda: shared.server_pid() not in (None, before), 60, "a new server process")
    view = shared.wait_status("ACTIVE")
    assert view["operating_status"] == "HEALTHY"
    tenant_connects(shared, target)


def test_killed_server_is_restarted_by_the_health_sweep(shared: Instance, target: Target) -> None:
    before = shared.server_pid()
    assert before is not None
    def repairs() -> int:
        events = shared.client.get(f"/instances/{shared.id}/events").json()["events"]
        return sum("restarted after it stopped" in e["message"] for e in events)

    repaired = repairs()
    killed_at = time.monotonic()

    os.kill(before, signal.SIGKILL)

    wait_for(lambda: shared.server_pid() not in (None, before), 60, "the health sweep to restart the server")
    shared.wait_status("ACTIVE")
    tenant_connects(shared, target)
    assert repairs() == repaired + 1
    assert time.monotonic() - killed_at < 60


def test_delete_leaves_nothing_behind(pair: Pair, reddwarf: ReddwarfProcesses, target: Target) -> None:
    spare = pair.spare
    spare.wait_status("ACTIVE")
    pid = spare.server_pid()
    assert pid is not None
    user = host.owner(pid)
    assert user.startswith(reddwarf.user_prefix)
    assert host.leftovers(user, spare.id, reddwarf.state_dir), "the instance should exist on the host"

    assert spare.client.delete(f"/instances/{spare.id}").status_code == 202

    wait_for(lambda: spare.client.get(f"/instances/{spare.id}").status_code == 404, 60, "the instance to go")
    assert host.leftovers(user, spare.id, reddwarf.state_dir) == []

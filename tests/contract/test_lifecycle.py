"""Lifecycle conformance, for every engine version: create -> ACTIVE and the tenant connects with the
engine's own client, the API shows and enforces what the version declares, the restart action, a
kill -9 of the server repaired by the health sweep, and a delete that leaves nothing on the host."""

from __future__ import annotations

import os
import signal
import time

import pytest

from reddwarf.client import ReddwarfAPIError, UserRequest
from reddwarf.domain.secret import Secret
from tests.contract import host
from tests.contract.clients import ADAPTERS
from tests.contract.conftest import Instance, Pair
from tests.contract.targets import Target
from tests.support.server import DELETE_TIMEOUT, ReddwarfProcesses, wait_for

pytestmark = pytest.mark.capability("lifecycle")


def tenant_connects(instance: Instance, target: Target) -> None:
    """As the instance's first tenant user where it has one, else as nobody can: the endpoint answers."""
    address, port = instance.endpoint()
    adapter = ADAPTERS[target.engine]
    for account in instance.accounts[:1]:
        adapter.use(address, port, account.user, account.password, account.database)


def test_create_becomes_active_and_healthy_on_the_standard_port(shared: Instance, target: Target) -> None:
    view = shared.view()

    assert view.status == "ACTIVE" and view.operating_status == "HEALTHY"
    assert view.wire()["datastore"] == {"type": target.engine, "version": target.version,
                                        "version_number": target.installed.number if target.installed else ""}
    assert view.address is not None and view.address.startswith("127.0.93.")
    assert view.port == target.default_port
    pid = shared.server_pid()
    assert pid is not None, "nothing listens on the instance's endpoint"
    assert host.owner(pid) != "root"
    tenant_connects(shared, target)


def test_the_api_shows_and_enforces_what_the_version_declares(reddwarf: ReddwarfProcesses, target: Target) -> None:
    with reddwarf.client() as wire, reddwarf.tenant() as client:
        # Reddwarf's own extension of the version view (capabilities, classification): read off the wire.
        base = f"/datastores/{target.engine}/versions/{target.version}"
        version = wire.get(base).json()["version"]
        listed = wire.get(f"{base}/capabilities").json()["capabilities"]
        declared = sorted(d for d in target.declared if ":" not in d)

        assert version["capabilities"] == declared
        assert version["classification"] in {"experimental", "technical_preview", "stable"}
        assert sorted(c["name"] for c in listed if c["enabled"]) == declared
        before = len(client.list_instances(all=True))
        for capability in ("users", "databases"):
            if target.declares(capability):
                continue
            users = [UserRequest(name="zed", password=Secret("pw-zed"))] if capability == "users" else []
            databases = ["zed"] if capability == "databases" else []
            with pytest.raises(ReddwarfAPIError) as refused:
                client.create_instance("refused", "1", 1, datastore=target.engine, version=target.version,
                                       databases=databases, users=users)
            assert (refused.value.status, refused.value.fault_name) == (400, "badRequest")
            assert capability in refused.value.message
        assert len(client.list_instances(all=True)) == before


def test_restart_action_restarts_the_server(shared: Instance, target: Target) -> None:
    before = shared.server_pid()
    assert before is not None

    shared.client.restart_instance(shared.id)

    wait_for(lambda: shared.server_pid() not in (None, before), 60, "a new server process")
    view = shared.wait_active()
    assert view.operating_status == "HEALTHY"
    tenant_connects(shared, target)


def test_killed_server_is_restarted_by_the_health_sweep(
    shared: Instance, target: Target, reddwarf: ReddwarfProcesses
) -> None:
    before = shared.server_pid()
    assert before is not None
    def repairs() -> int:
        with reddwarf.client() as wire:
            events = wire.get(f"/instances/{shared.id}/events").json()["events"]
        return sum("restarted after it stopped" in e["message"] for e in events)

    repaired = repairs()
    killed_at = time.monotonic()

    os.kill(before, signal.SIGKILL)

    wait_for(lambda: shared.server_pid() not in (None, before), 60, "the health sweep to restart the server")
    shared.wait_active()
    tenant_connects(shared, target)
    assert repairs() == repaired + 1
    assert time.monotonic() - killed_at < 60


def test_delete_leaves_nothing_behind(pair: Pair, reddwarf: ReddwarfProcesses, target: Target) -> None:
    spare = pair.spare
    spare.wait_active()
    pid = spare.server_pid()
    assert pid is not None
    user = host.owner(pid)
    assert user.startswith(reddwarf.user_prefix)
    assert host.leftovers(user, spare.id, reddwarf.state_dir), "the instance should exist on the host"

    spare.client.delete_instance(spare.id)

    spare.client.wait_for_delete(spare.id, timeout=DELETE_TIMEOUT)
    assert host.leftovers(user, spare.id, reddwarf.state_dir) == []

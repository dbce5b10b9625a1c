"""The warm pool on real servers: a create of the pool's profile takes a server built ahead of time, the pool
refills, anything else is built cold, and a smaller pool leaves nothing behind on the host."""

from __future__ import annotations

import json
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from reddwarf.client import Instance, ReddwarfClient, UserRequest
from reddwarf.domain.secret import Secret
from tests.support.server import (
    ACTIVE_TIMEOUT,
    DELETE_TIMEOUT,
    ReddwarfProcesses,
    instance_users,
    processes_of,
    running_plane,
    signal_processes,
    wait_for,
)

POOL_ENV = {
    "REDDWARF_WARM_POOL_SIZE": "1", "REDDWARF_WARM_POOL_FLAVOR": "1", "REDDWARF_WARM_POOL_VOLUME_GB": "1",
    "REDDWARF_WARM_POOL_DATASTORES": json.dumps(["postgresql:15", "redis"]),
    "REDDWARF_WARM_POOL_INTERVAL": "0.2", "REDDWARF_WARM_POOL_FAILURE_PAUSE": "1",
}


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("pool", "127.0.88.0/24", **POOL_ENV) as procs:
        yield procs


def slots(client: httpx.Client, *, failed_ok: bool = False) -> list[dict[str, Any]]:
    response = client.get("/mgmt/pool")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["pool"]["slots"]
    failed = [slot for slot in found if slot["state"] == "failed"]
    assert failed_ok or not failed, f"a pool build failed: {failed}"
    return found


def ready_slot(client: httpx.Client, datastore: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        return next((s for s in slots(client) if s["datastore"] == datastore and s["state"] == "ready"), None)

    found: dict[str, Any] = wait_for(ready, 120, f"a ready {datastore} slot in the warm pool")
    return found


def create_active(
    tenant: ReddwarfClient, datastore: str, version: str, user: UserRequest, *, flavor: str = "1",
    databases: tuple[str, ...] = (),
) -> tuple[Instance, Instance]:
    """The create's answer and the instance once ACTIVE."""
    created = tenant.create_instance("pool-" + secrets.token_hex(3), flavor, 1, datastore=datastore,
                                     version=version, databases=databases, users=[user])
    assert created.status == "BUILD"
    return created, tenant.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)


def events(client: httpx.Client, instance_id: str) -> list[str]:
    """The instance's events (Reddwarf's extension, read off the wire)."""
    return [event["message"] for event in client.get(f"/instances/{instance_id}/events").json()["events"]]


def redis_login(view: Instance, username: str, password: str) -> redis.Redis:
    return redis.Redis(host=view.address, port=view.port, username=username, password=password, socket_timeout=5)


def delete(tenant: ReddwarfClient, instance_id: str) -> None:
    tenant.delete_instance(instance_id)
    tenant.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)


def test_a_create_of_the_pool_profile_takes_the_ready_server_and_the_pool_refills(plane: ReddwarfProcesses) -> None:
    with plane.client() as client, plane.tenant() as tenant:
        slot = ready_slot(client, "postgresql")
        owner = plane.os_user(slot["id"])
        assert processes_of(owner), "a ready slot's server runs"
        alice = UserRequest(name="alice", password=Secret("pool pass 1"), databases=("app",))
        created, view = create_active(tenant, "postgresql", "15", alice, databases=("app",))
        instance_id = view.id
        # The server was taken when the create was recorded: the create's answer already had its address.
        assert created.addresses == view.addresses and created.port == view.port
        assert any("warm-pool" in message for message in events(client, instance_id))
        assert slot["id"] not in {s["id"] for s in slots(client)}
        with psycopg.connect(host=view.address, port=view.port, user="alice",
                             password="pool pass 1", dbname="app", connect_timeout=5) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        # The server the tenant reaches is the slot's: its OS user runs it.
        assert processes_of(owner)
        refill = ready_slot(client, "postgresql")
        assert refill["id"] != slot["id"]

        delete(tenant, instance_id)
        assert owner not in instance_users(plane.user_prefix)
        assert not processes_of(owner)


def test_a_create_of_another_flavor_is_built_cold_and_leaves_the_pool_alone(plane: ReddwarfProcesses) -> None:
    with plane.client() as client, plane.tenant() as tenant:
        slot = ready_slot(client, "redis")
        bob = UserRequest(name="bob", password=Secret("pool pass 2"))
        _, view = create_active(tenant, "redis", "7.0", bob, flavor="2")
        assert not any("warm-pool" in message for message in events(client, view.id))
        assert slot["id"] in {s["id"] for s in slots(client) if s["state"] == "ready"}
        with redis_login(view, "bob", "pool pass 2") as server:
            assert server.ping()
        delete(tenant, view.id)


def test_a_pool_server_that_stopped_is_replaced_before_a_tenant_gets_it(plane: ReddwarfProcesses) -> None:
    with plane.client() as client, plane.tenant() as tenant:
        slot = ready_slot(client, "redis")
        owner = plane.os_user(slot["id"])
        signal_processes(processes_of(owner), signal.SIGKILL)
        # It fails like a build (its error says why) and is destroyed; its tombstone goes after the pause.
        failed = wait_for(
            lambda: next((s for s in slots(client, failed_ok=True) if s["id"] == slot["id"] and s["state"] == "failed"),
                         None), 60, "the stopped slot to be failed")
        assert "stopped" in failed["error"]
        wait_for(lambda: owner not in instance_users(plane.user_prefix), 60, "the stopped slot to be destroyed")
        wait_for(lambda: slot["id"] not in {s["id"] for s in slots(client, failed_ok=True)}, 60, "the tombstone to go")
        replacement = ready_slot(client, "redis")
        assert replacement["id"] != slot["id"]
        _, view = create_active(tenant, "redis", "7.0", UserRequest(name="carol", password=Secret("pool pass 3")))
        assert any("warm-pool" in message for message in events(client, view.id))
        with redis_login(view, "carol", "pool pass 3") as server:
            assert server.set("k", "v") and server.get("k") == b"v"
        delete(tenant, view.id)


def test_a_create_that_takes_a_server_that_just_died_still_gets_a_working_one(plane: ReddwarfProcesses) -> None:
    """The server dies a moment before the create takes it, before the keeper's next check: the create's
    first attempt skips `start`, its bootstrap fails, and the retry starts the server again. (Should the
    keeper notice first, the create is built cold: a working server either way, which is what is asserted.)"""
    with plane.client() as client, plane.tenant() as tenant:
        slot = ready_slot(client, "redis")
        signal_processes(processes_of(plane.os_user(slot["id"])), signal.SIGKILL)
        _, view = create_active(tenant, "redis", "7.0", UserRequest(name="dave", password=Secret("pool pass 5")))
        with redis_login(view, "dave", "pool pass 5") as server:
            assert server.set("k", "v") and server.get("k") == b"v"
        delete(tenant, view.id)
        # If the keeper won, the slot failed: its tombstone goes after the pause (the next tests want none).
        wait_for(lambda: not [s for s in slots(client, failed_ok=True) if s["state"] == "failed"], 60,
                 "no failed slot left")


def test_a_slot_built_for_an_older_flavor_is_replaced_after_the_change(plane: ReddwarfProcesses) -> None:
    with plane.client() as client:
        before = ready_slot(client, "redis")
        assert before["id"] in {s["id"] for s in slots(client)}  # unchanged settings: the slot stays
        flavors = [{"id": "1", "name": "tiny", "ram_mb": 320, "vcpus": 1},
                   {"id": "2", "name": "small", "ram_mb": 1024, "vcpus": 1}]
        plane.stop_all()
        plane.start_server(REDDWARF_FLAVORS=json.dumps(flavors))
        wait_for(lambda: before["id"] not in {s["id"] for s in slots(client)}, 60,
                 "the slot built for the old flavor to be replaced")
        after = ready_slot(client, "redis")
        assert after["id"] != before["id"]
        plane.stop_all()
        plane.start_server()


def test_turning_the_pool_off_destroys_its_servers_and_leaves_nothing(plane: ReddwarfProcesses) -> None:
    with plane.client() as client:
        ready_slot(client, "postgresql")
        ready_slot(client, "redis")
        assert len(instance_users(plane.user_prefix)) == 2
        plane.stop_all()
        plane.start_server(REDDWARF_WARM_POOL_SIZE="0")
        wait_for(lambda: slots(client) == [], 120, "the pool to be empty")
        wait_for(lambda: instance_users(plane.user_prefix) == [], 60, "the slots' OS users to be removed")
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        pool = plane.state_dir / "pool"  # the copy-on-write volume pool stays, empty
        assert not [m for m in mounts if m.startswith(str(plane.state_dir)) and m != str(pool)]
        assert not list((plane.state_dir / "instances").iterdir())
        assert not pool.exists() or not list((pool / "volumes").iterdir())

"""A worker killed with SIGKILL while it builds a warm-pool slot, or right after a create claimed one, loses
nothing: the pool converges to one ready slot, the instance gets the slot it claimed, and nothing leaks.

Same mechanism as test_worker_killed.py (`REDDWARF_TEST_CRASH_AT`), with Redis slots (the quickest build),
workers as separate processes and a one-second lease.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.chaos.test_worker_killed import crash_and_recover, every_step, steps_of, store
from tests.support.server import ReddwarfProcesses, instance_users, processes_of, running_plane, wait_for

BUILD_STEPS = ["allocate_address", "prepare", "initialise", "start", "answers", "ready"]
POOL_ON = {
    "REDDWARF_WARM_POOL_SIZE": "1", "REDDWARF_WARM_POOL_DATASTORES": json.dumps(["redis"]),
    "REDDWARF_WARM_POOL_INTERVAL": "0.2",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-pool", "127.0.87.0/24", REDDWARF_EMBEDDED_WORKERS="0", REDDWARF_LEASE_TTL="1") as procs:
        yield procs


def slots(client: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/mgmt/pool").json()["pool"]["slots"]
    return found


def build_journal(plane: ReddwarfProcesses, slot_id: str) -> list[str] | None:
    """The journaled steps of the slot's one build, once that build is done (None while it runs)."""
    db = store(plane)
    try:
        with db.unit_of_work(write=False) as uow:
            builds = [op for op in uow.operations.history_for(slot_id) if op.kind == "pool.build"]
            if not builds:
                return None
            (build,) = builds
            assert build.state == "done", (build.state, build.last_error)
            return steps_of(uow, build.id)
    finally:
        db.dispose()


def one_ready_slot(client: httpx.Client) -> dict[str, Any] | None:
    found = slots(client)
    assert not [s for s in found if s["state"] == "failed"], found
    return found[0] if len(found) == 1 and found[0]["state"] == "ready" else None


@pytest.fixture
def empty_pool_after(plane: ReddwarfProcesses) -> Iterator[None]:
    yield
    plane.stop_all()
    plane.start_server()
    plane.start_worker(REDDWARF_WARM_POOL_SIZE="0")
    with plane.client() as client:
        wait_for(lambda: slots(client) == [], 60, "the pool to be emptied")
    wait_for(lambda: instance_users(plane.user_prefix) == [], 60, "every slot's OS user to be removed")
    plane.stop_all()
    plane.start_server()


@pytest.mark.usefixtures("empty_pool_after")
@pytest.mark.parametrize(("step", "when"), every_step(BUILD_STEPS))
def test_a_build_survives_a_worker_killed_at_every_step(plane: ReddwarfProcesses, step: str, when: str) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    plane.extra_env.update(POOL_ON)
    try:
        crash_and_recover(plane, "pool.build", step, when, marker)
    finally:
        for key in POOL_ON:
            plane.extra_env.pop(key)
    with plane.client() as client:
        slot = wait_for(lambda: one_ready_slot(client), 60, "one ready slot after the crash")
    steps = wait_for(lambda: build_journal(plane, slot["id"]), 30, "the slot's build to be done")
    assert steps == BUILD_STEPS
    (owner,) = instance_users(plane.user_prefix)
    assert processes_of(owner), "the slot's server runs"


@pytest.mark.usefixtures("empty_pool_after")
def test_a_create_killed_right_after_its_claim_keeps_the_slot_it_claimed(plane: ReddwarfProcesses) -> None:
    marker = plane.state_dir / f"crash-{secrets.token_hex(4)}"
    plane.extra_env.update(POOL_ON)
    try:
        builder = plane.start_worker()
        with plane.client() as client:
            slot = wait_for(lambda: one_ready_slot(client), 60, "a ready slot")
            builder.terminate()
            builder.wait(timeout=60)
            response = client.post("/instances", json={"instance": {
                "name": "chaos-claim", "flavorRef": "1", "volume": {"size": 1},
                "datastore": {"type": "redis", "version": "7.0"},
                "users": [{"name": "bob", "password": "pw-" + secrets.token_hex(4)}],
            }})
            assert response.status_code == 200, response.text
            instance_id = response.json()["instance"]["id"]
            crash_and_recover(plane, "instance.create", "claim", "after", marker)
            wait_for(lambda: client.get(f"/instances/{instance_id}").json()["instance"]["status"] == "ACTIVE",
                     120, "the instance to be ACTIVE after the crash")
            db = store(plane)
            try:
                with db.unit_of_work(write=False) as uow:
                    instance = uow.instances.get(instance_id)
            finally:
                db.dispose()
            assert instance is not None and instance.workload_id == slot["id"]
            # The claimed slot is the instance's now; the pool built one new slot, no more.
            wait_for(lambda: one_ready_slot(client), 60, "the pool to refill")
            assert len(instance_users(plane.user_prefix)) == 2
            assert client.delete(f"/instances/{instance_id}").status_code == 202
            wait_for(lambda: client.get(f"/instances/{instance_id}").status_code == 404, 60, "the delete")
            assert len(instance_users(plane.user_prefix)) == 1
    finally:
        for key in POOL_ON:
            plane.extra_env.pop(key)

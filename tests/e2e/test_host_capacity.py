"""The host's storage is reserved, not hoped for: on a real Reddwarf whose state dir sits on a small file
system (2.5 GiB), two 1 GB instances fit, a third is refused before anything of it exists, both volumes can
be filled to the last block without the other tenant's writes failing, and a delete gives the storage back."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SCRATCH_BASE
from tests.support.server import REDDWARF, ReddwarfProcesses, instance_users, sweep_test_users, unmount_under, wait_for

GIB = 1024**3
HOST_SIZE = 5 * GIB // 2


@dataclass
class Host:
    plane: ReddwarfProcesses
    mount: Path
    tenants: list[httpx.Client]
    instances: list[dict[str, Any]]


def _create(client: httpx.Client, name: str) -> httpx.Response:
    body = {"instance": {"name": name, "flavorRef": "1", "volume": {"size": 1},
                         "datastore": {"type": "redis", "version": "7.0"}}}
    return client.post("/instances", json=body)


def _active(client: httpx.Client, instance_id: str) -> dict[str, Any]:
    def view() -> dict[str, Any] | None:
        found: dict[str, Any] = client.get(f"/instances/{instance_id}").json()["instance"]
        assert found["status"] != "ERROR", found.get("fault")
        return found if found["status"] == "ACTIVE" else None

    result: dict[str, Any] = wait_for(view, 120, f"instance {instance_id} to be ACTIVE")
    return result


def _second_tenant(plane: ReddwarfProcesses) -> httpx.Client:
    env = plane.env()
    made = subprocess.run([REDDWARF, "project", "create", "tenant-b", "--json"], env=env, check=True,
                          capture_output=True, text=True)
    project = json.loads(made.stdout)["id"]
    issued = subprocess.run([REDDWARF, "token", "create", "--project", project, "--json"], env=env, check=True,
                            capture_output=True, text=True)
    token = json.loads(issued.stdout)["token"]
    return httpx.Client(base_url=f"{plane.url}/v1.0/{project}", headers={"X-Auth-Token": token}, timeout=30)


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    SCRATCH_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = SCRATCH_BASE / f"capacity-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    image, mount = root / "host.img", root / "host"
    with image.open("wb") as handle:
        handle.truncate(HOST_SIZE)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    mount.mkdir(mode=0o755)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    state = mount / "state"
    state.mkdir(mode=0o755)
    plane = ReddwarfProcesses(state_dir=state, address_pool="127.0.172.0/24")
    tenants: list[httpx.Client] = []
    try:
        plane.start_server()
        tenants = [plane.client(), _second_tenant(plane)]
        instances = []
        for number, tenant in enumerate(tenants):
            response = _create(tenant, f"cap-{number}")
            assert response.status_code == 200, response.text
            instances.append(_active(tenant, response.json()["instance"]["id"]))
        yield Host(plane, mount, tenants, instances)
    finally:
        for tenant in tenants:
            tenant.close()
        plane.stop_all()
        sweep_test_users(plane.user_prefix)
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def _data_dir(host: Host, view: dict[str, Any]) -> Path:
    return host.plane.state_dir / "instances" / view["id"] / "volume" / "data"


def _fill_as_owner(directory: Path) -> tuple[int, str]:
    """Write zeros into `directory` as its owner (the instance's OS user) until the write fails."""
    owner = pwd.getpwuid(directory.stat().st_uid)
    target = directory / "filler"
    done = subprocess.run(
        ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups", "--",
         "dd", "if=/dev/zero", f"of={target}", "bs=4M", "conv=fsync", "status=none"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    return target.stat().st_size, done.stderr


def test_a_create_the_host_storage_cannot_hold_is_refused_and_creates_nothing(host: Host) -> None:
    users_before = set(instance_users(host.plane.user_prefix))
    dirs_before = set((host.plane.state_dir / "instances").iterdir())

    response = _create(host.tenants[0], "one-too-many")

    assert response.status_code == 503, response.text
    assert "not enough storage" in response.json()["serviceUnavailable"]["message"]
    names = [i["name"] for i in host.tenants[0].get("/instances").json()["instances"]]
    assert names == ["cap-0"]
    assert set(instance_users(host.plane.user_prefix)) == users_before
    assert set((host.plane.state_dir / "instances").iterdir()) == dirs_before


def test_a_full_volume_does_not_make_another_tenants_writes_fail(host: Host) -> None:
    # Each tenant asks for one more volume: whatever the control plane admits must be fillable to its size.
    for number, tenant in enumerate(host.tenants):
        response = _create(tenant, f"extra-{number}")
        if response.status_code == 200:
            _active(tenant, response.json()["instance"]["id"])
    admitted = [(tenant, view) for tenant in host.tenants for view in tenant.get("/instances").json()["instances"]]
    assert len(admitted) >= 2

    filled = []
    for _tenant, view in admitted:  # one tenant fills its volume, then the next writes all it was promised
        directory = _data_dir(host, view)
        written, error = _fill_as_owner(directory)
        filled.append(directory / "filler")
        assert "No space left on device" in error
        assert written > 0.9 * GIB, f"{view['name']} got only {written} bytes: the host ran out first"
    assert os.statvfs(host.mount).f_bavail > 0  # it was each volume that filled, never the host
    for path in filled:
        path.unlink()


def test_deleting_an_instance_gives_its_storage_back(host: Host) -> None:
    tenant, view = host.tenants[0], host.instances[0]
    assert tenant.delete(f"/instances/{view['id']}").status_code == 202
    wait_for(lambda: tenant.get(f"/instances/{view['id']}").status_code == 404, 60, "the delete to finish")

    response = _create(tenant, "fits-again")

    assert response.status_code == 200, response.text
    _active(tenant, response.json()["instance"]["id"])

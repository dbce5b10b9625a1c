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

import pytest

from reddwarf.client import Instance, ReddwarfAPIError, ReddwarfClient
from reddwarf.domain.capacity import GIB
from tests.conftest import SCRATCH_BASE
from tests.support.server import (
    ACTIVE_TIMEOUT,
    DELETE_TIMEOUT,
    REDDWARF,
    ReddwarfProcesses,
    instance_users,
    sweep_test_users,
    unmount_under,
)

HOST_SIZE = 5 * GIB // 2


@dataclass
class Host:
    plane: ReddwarfProcesses
    mount: Path
    tenants: list[ReddwarfClient]
    instances: list[Instance]


def _create_active(client: ReddwarfClient, name: str) -> Instance:
    created = client.create_instance(name, "1", 1, datastore="redis", version="7.0")
    return client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)


def _second_tenant(plane: ReddwarfProcesses) -> ReddwarfClient:
    env = plane.env()
    made = subprocess.run([REDDWARF, "project", "create", "tenant-b", "--json"], env=env, check=True,
                          capture_output=True, text=True)
    project = json.loads(made.stdout)["id"]
    issued = subprocess.run([REDDWARF, "token", "create", "--project", project, "--json"], env=env, check=True,
                            capture_output=True, text=True)
    token = json.loads(issued.stdout)["token"]
    return plane.tenant(project, token)


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
    # The host's own disk is the storage here (a host without the copy-on-write pool); the pool's capacity,
    # a fixed preallocated size, is tested in tests/integration/runtime/test_local_runtime_pool.py.
    plane = ReddwarfProcesses(state_dir=state, address_pool="127.0.172.0/24",
                              extra_env={"REDDWARF_LOCAL_USE_COW_POOL": "false"})
    tenants: list[ReddwarfClient] = []
    try:
        plane.start_server()
        tenants = [plane.tenant(), _second_tenant(plane)]
        instances = [_create_active(tenant, f"cap-{number}") for number, tenant in enumerate(tenants)]
        yield Host(plane, mount, tenants, instances)
    finally:
        for tenant in tenants:
            tenant.close()
        plane.stop_all()
        sweep_test_users(plane.user_prefix)
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def _data_dir(host: Host, view: Instance) -> Path:
    return host.plane.state_dir / "instances" / view.id / "volume" / "data"


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

    with pytest.raises(ReddwarfAPIError) as refused:
        host.tenants[0].create_instance("one-too-many", "1", 1, datastore="redis", version="7.0")

    assert (refused.value.status, refused.value.fault_name) == (503, "serviceUnavailable")
    assert "not enough storage" in refused.value.message
    names = [i.name for i in host.tenants[0].list_instances(all=True)]
    assert names == ["cap-0"]
    assert set(instance_users(host.plane.user_prefix)) == users_before
    assert set((host.plane.state_dir / "instances").iterdir()) == dirs_before


def test_a_full_volume_does_not_make_another_tenants_writes_fail(host: Host) -> None:
    # Each tenant asks for one more volume: whatever the control plane admits must be fillable to its size.
    for number, tenant in enumerate(host.tenants):
        try:
            _create_active(tenant, f"extra-{number}")
        except ReddwarfAPIError as exc:
            assert exc.status == 503, exc
    admitted = [(tenant, view) for tenant in host.tenants for view in tenant.list_instances(all=True)]
    assert len(admitted) >= 2

    filled = []
    for _tenant, view in admitted:  # one tenant fills its volume, then the next writes all it was promised
        directory = _data_dir(host, view)
        written, error = _fill_as_owner(directory)
        filled.append(directory / "filler")
        assert "No space left on device" in error
        assert written > 0.9 * GIB, f"{view.name} got only {written} bytes: the host ran out first"
    assert os.statvfs(host.mount).f_bavail > 0  # it was each volume that filled, never the host
    for path in filled:
        path.unlink()


def test_deleting_an_instance_gives_its_storage_back(host: Host) -> None:
    tenant, view = host.tenants[0], host.instances[0]
    tenant.delete_instance(view.id)
    tenant.wait_for_delete(view.id, timeout=DELETE_TIMEOUT)

    assert _create_active(tenant, "fits-again").status == "ACTIVE"

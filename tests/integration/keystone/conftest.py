"""A real Keystone (and a short-expiry twin) for the session, and one Reddwarf server in keystone mode.

Reddwarf runs with `REDDWARF_IDENTITY=keystone`, its service user `reddwarf` (role `service` in project
`service`), a validation cache TTL of `CACHE_TTL` seconds, and is registered in Keystone's catalog by
`reddwarf openstack register`, so Trove's clients find it the way they would in a cloud.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from keystone_support import (
    CACHE_TTL,
    SHORT_EXPIRATION,
    Cloud,
    KeystoneServer,
    build_cloud,
    ensure_keystone_venv,
    register,
)
from tests.conftest import SCRATCH_BASE
from tests.support.server import ReddwarfProcesses, reddwarf_processes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "keystone":
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def cloud() -> Iterator[Cloud]:
    venv = ensure_keystone_venv()
    SCRATCH_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = SCRATCH_BASE / f"keystone-{secrets.token_hex(4)}"
    root.mkdir(mode=0o700)
    admin_password = secrets.token_urlsafe(16)
    keystone = KeystoneServer(venv, root)
    short = KeystoneServer(venv, root, name="keystone-short", expiration=SHORT_EXPIRATION)
    try:
        keystone.write_config()
        short.write_config()
        keystone.bootstrap(admin_password)
        keystone.start()
        short.start()
        yield build_cloud(keystone, short, admin_password)
    finally:
        keystone.stop()
        short.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def reddwarf(cloud: Cloud) -> Iterator[ReddwarfProcesses]:
    root = SCRATCH_BASE / f"keystone-rd-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    try:
        with reddwarf_processes(root, "127.0.92.0/24") as procs:
            procs.start_server(
                REDDWARF_IDENTITY="keystone",
                REDDWARF_KEYSTONE_AUTH_URL=cloud.keystone.url,
                REDDWARF_KEYSTONE_USERNAME=cloud.service.name,
                REDDWARF_KEYSTONE_PASSWORD=cloud.service.password,
                REDDWARF_KEYSTONE_PROJECT_NAME=cloud.service.project_name,
                REDDWARF_KEYSTONE_CACHE_TTL=str(CACHE_TTL),
            )
            register(cloud, procs.url)
            yield procs
    finally:
        shutil.rmtree(root, ignore_errors=True)

"""An instance's OS user (what a tenant with a shell-capable root would be) can neither read nor list any
file of the control plane on a real started Reddwarf: the store and its WAL, the key, the admin token."""

from __future__ import annotations

import errno
import json
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ACTIVE_TIMEOUT, ReddwarfProcesses, running_plane

# A script run as the instance's OS user: for each path, the errno of listing (directory) or opening it.
_TRY = """
import json, os, sys
found = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            os.close(os.open(path, os.O_RDONLY))
        found[path] = 0
    except OSError as exc:
        found[path] = exc.errno
print(json.dumps(found))
"""
CONTROL_FILES = ("reddwarf.db", "reddwarf.db-wal", "reddwarf.db-shm", "secret.key", "admin-token", "admin-project")


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("ctlfiles", "127.0.171.0/24") as procs:
        yield procs


def _as_user(user: str, paths: list[Path]) -> dict[str, int]:
    entry = pwd.getpwnam(user)
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    done = subprocess.run(
        [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--",
         "/usr/bin/python3", "-c", _TRY, *map(str, paths)],
        capture_output=True, text=True, check=True, cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=30,
    )
    found: dict[str, int] = json.loads(done.stdout)
    return found


def test_an_instance_user_can_neither_read_nor_list_the_control_plane_files(plane: ReddwarfProcesses) -> None:
    with plane.tenant() as client:
        created = client.create_instance("ctl-probe", "1", 1, datastore="redis", version="7.0")
        view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
    os_user = plane.os_user(view.id)
    control = plane.state_dir / "control"
    targets = [control / name for name in CONTROL_FILES]
    for target in targets:  # the store is in WAL mode and in use: its -wal and -shm exist too
        assert target.is_file(), f"{target} is missing: is the control plane's layout the one documented?"

    refused = _as_user(os_user, [control, *targets])
    assert refused == {str(path): errno.EACCES for path in [control, *targets]}
    # Nothing of the control plane is left where an earlier version kept it, readable or not.
    legacy = [plane.state_dir / name for name in CONTROL_FILES]
    leftovers = {path: code for path, code in _as_user(os_user, legacy).items() if code != errno.ENOENT}
    assert leftovers == {}
    # The instance's own directories stay reachable for their user (the server runs and answers).
    assert view.operating_status == "HEALTHY"

"""Builds local runtimes and instances for one test and removes every trace of them afterwards (the local
runtime's integration tests and the engines' backup tests share it)."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import subprocess
import uuid
from pathlib import Path

from reddwarf.domain.workload import Placement, Resources
from reddwarf.runtimes.local import LocalRuntime, LocalRuntimeSettings
from reddwarf.runtimes.local.paths import layout

TEST_POOL = "127.0.77.0/24"
USER_PREFIX = "rdt-"


class Instances:
    """Builds runtimes and instances for one test and removes every trace of them afterwards."""

    def __init__(self, scratch_root: Path) -> None:
        self.state_dir = scratch_root / "state"
        self.cgroup_parent = f"reddwarf-test-{secrets.token_hex(4)}"
        self.placements: list[tuple[LocalRuntime, Placement]] = []

    def settings(self, **overrides: object) -> LocalRuntimeSettings:
        values: dict[str, object] = {
            "state_dir": str(self.state_dir),
            "address_pool": TEST_POOL,
            "user_prefix": USER_PREFIX,
            "cgroup_parent": self.cgroup_parent,
            "kill_timeout": 10.0,
            "pool_gb": 8,  # the copy-on-write pool (on where the host can): small, not half the disk
        }
        values.update(overrides)
        return LocalRuntimeSettings.model_validate(values)

    def runtime(self, **overrides: object) -> LocalRuntime:
        return LocalRuntime(self.settings(**overrides))

    def place(self, runtime: LocalRuntime, port: int) -> Placement:
        """Allocate an address the way the control plane does (first bindable, not taken): a placement that
        cleanup destroys, not prepared yet."""
        taken = {(p.address, p.port) for _, p in self.placements}
        address = next(
            a for a in runtime.address_candidates(port) if (a, port) not in taken and runtime.bindable(a, port)
        )
        placement = runtime.placement(str(uuid.uuid4()), address, port)
        self.placements.append((runtime, placement))
        return placement

    def prepare(self, runtime: LocalRuntime, resources: Resources, port: int) -> Placement:
        placement = self.place(runtime, port)
        runtime.prepare(placement, resources)
        return placement

    def cleanup(self) -> None:
        for runtime, placement in reversed(self.placements):
            try:
                runtime.destroy(placement)
            except Exception:
                _force_cleanup(runtime, placement)
        pool = self.state_dir / "pool"  # the copy-on-write pool
        mounted = pool.is_dir() and os.stat(pool).st_dev != os.stat(self.state_dir).st_dev
        if mounted and subprocess.run(["umount", str(pool)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(pool)], check=False, capture_output=True)
        for controller in ("memory", "cpu", "pids", "unified"):
            with contextlib.suppress(OSError):
                (Path("/sys/fs/cgroup") / controller / self.cgroup_parent).rmdir()


def _force_cleanup(runtime: LocalRuntime, placement: Placement) -> None:
    paths = layout(runtime._settings, placement.instance_id)
    with contextlib.suppress(KeyError):
        uid = pwd.getpwnam(paths.os_user).pw_uid
        subprocess.run(["pkill", "-KILL", "-U", str(uid)], check=False)
    subprocess.run(["umount", "-l", str(paths.volume_dir)], check=False, capture_output=True)
    subprocess.run(["userdel", paths.os_user], check=False, capture_output=True)
    subprocess.run(["groupdel", paths.os_user], check=False, capture_output=True)

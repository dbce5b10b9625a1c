"""Resource limits of the local runtime: one cgroup per instance for the flavor's RAM and vCPUs, and a
limit on its number of processes and threads (`pids.max`: a fork bomb stops at it, not at the host's pid_max).

cgroup v2 is used where its memory controller is available (at `<root>` or `<root>/unified`), else the v1
`memory` and `cpu` hierarchies (`memory.limit_in_bytes`, `cpu.cfs_quota_us`/`cpu.cfs_period_us`) and, where
the host mounts it, the v1 `pids` hierarchy. Each instance's cgroup is `<hierarchy>/<cgroup_parent>/<os
user>`. When neither is usable, `Cgroups.mode` is "none" and `reason` says why; the runtime reports it in its
isolation report (with whether a pids limit is in force).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reddwarf.domain.errors import TemporaryError

log = logging.getLogger(__name__)

CPU_PERIOD_US = 100_000
Mode = Literal["v2", "v1", "none"]


@dataclass(frozen=True, slots=True)
class Detection:
    mode: Mode
    reason: str
    v2_root: Path | None = None
    pids: bool = False  # a pids controller is available (v2: in the root's controllers; v1: its hierarchy)
    freezer: bool = False  # v1: a freezer hierarchy (v2 has `cgroup.freeze` in every cgroup)


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def detect(root: Path) -> Detection:
    """Which cgroup version this host lets us use for memory and cpu limits, and why."""
    for v2_root in (root, root / "unified"):
        controllers = v2_root / "cgroup.controllers"
        if controllers.is_file():
            available = controllers.read_text().split()
            if "memory" in available and _writable_dir(v2_root):
                return Detection(
                    "v2", f"cgroup v2 at {v2_root} (controllers: {' '.join(available)})", v2_root, "pids" in available
                )
    if _writable_dir(root / "memory") and _writable_dir(root / "cpu"):
        pids = _writable_dir(root / "pids")
        found = "memory, cpu and pids" if pids else "memory and cpu (no pids)"
        return Detection("v1", f"cgroup v1 {found} hierarchies under {root}", pids=pids,
                         freezer=_writable_dir(root / "freezer"))
    return Detection("none", f"no writable cgroup v2 memory controller or v1 memory+cpu hierarchy under {root}")


def _write(path: Path, value: str) -> None:
    """One write(2) of `value` to a cgroup control file (the kernel takes each write as one command)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: Path) -> bytes:
    """A small control file's bytes, without a text layer (the health loop reads them for every instance)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class Cgroups:
    """Creates, limits, fills and removes per-instance cgroups. Every method is idempotent."""

    def __init__(self, detection: Detection, root: Path, parent: str) -> None:
        self.detection = detection
        self._root = root
        self._parent = parent

    @property
    def mode(self) -> Mode:
        return self.detection.mode

    def _dirs(self, name: str) -> dict[str, Path]:
        """Controller -> the instance cgroup directory in that hierarchy."""
        if self.mode == "v2":
            assert self.detection.v2_root is not None
            return {"unified": self.detection.v2_root / self._parent / name}
        if self.mode == "v1":
            controllers = ("memory", "cpu", *(("pids",) if self.detection.pids else ()),
                           *(("freezer",) if self.detection.freezer else ()))
            return {c: self._root / c / self._parent / name for c in controllers}
        return {}

    def _enable_v2_controllers(self) -> None:
        """Enable memory and cpu for the children of the root and of every parent level (v2 needs it)."""
        assert self.detection.v2_root is not None
        level = self.detection.v2_root
        wanted = [c for c in ("memory", "cpu", "pids") if c in (level / "cgroup.controllers").read_text().split()]
        for part in ("", *self._parent.split("/")):
            level = level / part if part else level
            level.mkdir(mode=0o755, exist_ok=True)
            enabled = (level / "cgroup.subtree_control").read_text().split()
            for controller in wanted:
                if controller not in enabled:
                    _write(level / "cgroup.subtree_control", f"+{controller}")

    def ensure(self, name: str, memory_mb: int, vcpus: int, pids: int) -> None:
        """Create the instance's cgroup (if missing) and set its memory, cpu and (where available) pids limits."""
        if self.mode == "none":
            return
        memory = memory_mb * 1024 * 1024
        quota = vcpus * CPU_PERIOD_US
        if self.mode == "v2":
            self._enable_v2_controllers()
            path = self._dirs(name)["unified"]
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
            _write(path / "memory.max", str(memory))
            with contextlib.suppress(FileNotFoundError):
                _write(path / "memory.swap.max", "0")
            if (path / "cpu.max").exists():
                _write(path / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            if (path / "pids.max").exists():
                _write(path / "pids.max", str(pids))
            return
        dirs = self._dirs(name)
        for path in dirs.values():
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write(dirs["memory"] / "memory.limit_in_bytes", str(memory))
        _write(dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(dirs["cpu"] / "cpu.cfs_quota_us", str(quota))
        if "pids" in dirs:
            _write(dirs["pids"] / "pids.max", str(pids))

    def memory_limit(self, name: str) -> int | None:
        """The memory limit in bytes actually in force, or None without a cgroup."""
        if self.mode == "none":
            return None
        if self.mode == "v2":
            path = self._dirs(name)["unified"] / "memory.max"
        else:
            path = self._dirs(name)["memory"] / "memory.limit_in_bytes"
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        return None if text == "max" else int(text)

    def cpu_quota(self, name: str) -> tuple[int, int] | None:
        """(quota, period) in microseconds, or None without a cgroup or a limit."""
        if self.mode == "none":
            return None
        try:
            if self.mode == "v2":
                quota_text, period_text = (self._dirs(name)["unified"] / "cpu.max").read_text().split()
                return None if quota_text == "max" else (int(quota_text), int(period_text))
            cpu = self._dirs(name)["cpu"]
            quota = int((cpu / "cpu.cfs_quota_us").read_text())
            return None if quota < 0 else (quota, int((cpu / "cpu.cfs_period_us").read_text()))
        except FileNotFoundError:
            return None

    def pids_limit(self, name: str) -> int | None:
        """The limit on the instance's processes and threads in force, or None without one."""
        path = self._dirs(name).get("unified" if self.mode == "v2" else "pids")
        try:
            text = "max" if path is None else (path / "pids.max").read_text().strip()
        except FileNotFoundError:
            return None
        return None if text == "max" else int(text)

    def _freezer_file(self, name: str) -> tuple[Path, str, str] | None:
        """The file that freezes the instance's cgroup, and what to write to freeze and to thaw it."""
        if self.mode == "v2":
            return self._dirs(name)["unified"] / "cgroup.freeze", "1", "0"
        path = self._dirs(name).get("freezer")
        return None if path is None else (path / "freezer.state", "FROZEN", "THAWED")

    def freeze(self, name: str) -> bool:
        """Freeze every process of the instance's cgroup (what a hung host looks like; tests and benchmarks).
        False where the host has no freezer for it."""
        found = self._freezer_file(name)
        if found is None or not found[0].exists():
            return False
        _write(found[0], found[1])
        return True

    def thaw(self, name: str) -> None:
        """Thaw the instance's cgroup (nothing without a freezer): a fence's SIGKILL takes effect on a frozen
        process only once it is thawed."""
        found = self._freezer_file(name)
        if found is not None:
            with contextlib.suppress(FileNotFoundError):
                _write(found[0], found[2])

    def members(self, name: str) -> set[int]:
        """Pids in the instance's cgroup (the union over hierarchies)."""
        found: set[int] = set()
        for path in self._dirs(name).values():
            try:
                found |= {int(line) for line in (path / "cgroup.procs").read_text().split()}
            except FileNotFoundError:
                continue
        return found

    def members_of_every_hierarchy(self, name: str) -> set[int]:
        """Pids in the instance's cgroup of every hierarchy (a server started before a hierarchy was used,
        e.g. before the pids limit existed, is in some only)."""
        found: set[int] | None = None
        for path in self._dirs(name).values():
            try:
                pids = {int(line) for line in _read(path / "cgroup.procs").split()}
            except FileNotFoundError:
                pids = set()
            found = pids if found is None else found & pids
        return found or set()

    def procs_files(self, name: str) -> list[Path]:
        """The `cgroup.procs` file of the instance's cgroup in every hierarchy (none in mode "none")."""
        return [path / "cgroup.procs" for path in self._dirs(name).values()]

    def attach(self, name: str, pids: list[int]) -> None:
        """Move `pids` into the instance's cgroup; a pid that has exited meanwhile is skipped."""
        for path in self._dirs(name).values():
            for pid in pids:
                try:
                    _write(path / "cgroup.procs", str(pid))
                except ProcessLookupError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.ESRCH:
                        continue
                    raise

    def remove(self, name: str) -> None:
        """Remove the instance's cgroup; its processes must be gone (TemporaryError while busy)."""
        for path in self._dirs(name).values():
            try:
                path.rmdir()
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    raise TemporaryError(f"cgroup {path} still has processes", delay=1.0) from None
                raise
            log.info("removed cgroup %s", path)

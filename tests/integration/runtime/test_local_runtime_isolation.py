"""Resource isolation and one-time init of the local runtime: cgroups, loop volumes, init marker."""

from __future__ import annotations

import errno
import os
import pwd
import time
from pathlib import Path

import pytest
from local_runtime_support import Instances

from reddwarf.domain.errors import PermanentError
from reddwarf.domain.workload import CommandSpec, FileSpec, Resources, WorkloadSpec

GIB = 1024**3


def test_cgroup_limits_are_the_flavors_and_hold_the_server(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    if runtime.isolation_report()["memory_cpu_limits"] == "none":
        pytest.skip("this host offers no cgroups")
    placement = instances.prepare(runtime, Resources(memory_mb=192, vcpus=2, volume_gb=1), port)
    cgroups = runtime._cgroups
    assert cgroups.memory_limit(placement.os_user) == 192 * 1024 * 1024
    assert cgroups.cpu_quota(placement.os_user) == (200_000, 100_000)
    spec = WorkloadSpec(
        instance_id=placement.instance_id,
        init=(),
        server=CommandSpec(argv=("/usr/bin/python3", "-c", "import os, time\nos.fork()\ntime.sleep(600)")),
        resources=Resources(memory_mb=192, vcpus=2, volume_gb=1),
        stop_timeout=5.0,
    )
    runtime.start(placement, spec)
    seen = runtime.observe(placement)
    assert seen.running and seen.pid is not None
    # The launcher may still be joining when start returns (the server runs only once it has joined).
    deadline = time.monotonic() + 15
    while seen.pid not in cgroups.members(placement.os_user):
        assert time.monotonic() < deadline, "the server never joined its cgroup"
        time.sleep(0.01)
    uid = pwd.getpwnam(placement.os_user).pw_uid
    mine = {int(p) for p in os.listdir("/proc") if p.isdigit() and _uid(int(p)) == uid}
    assert mine <= cgroups.members(placement.os_user) | _gone(mine)


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return None


def _gone(pids: set[int]) -> set[int]:
    return {pid for pid in pids if not Path(f"/proc/{pid}").exists()}


def test_volume_has_the_size_asked_and_a_full_volume_stops_only_its_instance(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    if runtime.isolation_report()["volumes"] != "loop":
        pytest.skip("this host offers no loop volumes")
    first = instances.prepare(runtime, Resources(memory_mb=128, vcpus=1, volume_gb=1), port)
    second = instances.prepare(runtime, Resources(memory_mb=128, vcpus=1, volume_gb=1), port)
    seen = runtime.observe(first)
    assert seen.volume_size_bytes is not None and 0.9 * GIB < seen.volume_size_bytes <= GIB
    assert seen.volume_used_bytes is not None and seen.volume_used_bytes < 0.1 * GIB

    filler = Path(first.data_dir) / "filler"
    with pytest.raises(OSError) as full, filler.open("wb") as out:
        os.posix_fallocate(out.fileno(), 0, 2 * GIB)
    assert full.value.errno == errno.ENOSPC
    _fill(Path(first.data_dir))
    with pytest.raises(OSError) as again:
        (Path(first.data_dir) / "more").write_bytes(b"x" * 1024 * 1024)
    assert again.value.errno == errno.ENOSPC
    assert runtime.observe(first).volume_used_bytes is not None

    (Path(second.data_dir) / "fine").write_bytes(b"x" * 1024 * 1024)  # the neighbour still writes
    assert (Path(second.data_dir) / "fine").stat().st_size == 1024 * 1024

    runtime.prepare(first, Resources(memory_mb=128, vcpus=1, volume_gb=2))  # grown online
    grown = runtime.observe(first).volume_size_bytes
    assert grown is not None and grown > 1.8 * GIB


def _fill(directory: Path) -> None:
    """Take every free block of the filesystem holding `directory`, in shrinking chunks."""
    chunk, index = 64 * 1024 * 1024, 0
    while chunk >= 4096:
        index += 1
        with (directory / f"fill-{index}").open("wb") as out:
            try:
                while True:
                    os.posix_fallocate(out.fileno(), out.seek(0, os.SEEK_END), chunk)
                    out.seek(chunk, os.SEEK_CUR)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        chunk //= 4


def _init_workload(placement_dir: str, config_dir: str, instance_id: str, script: str) -> WorkloadSpec:
    return WorkloadSpec(
        instance_id=instance_id,
        init=(CommandSpec(argv=("/bin/sh", f"{config_dir}/init.sh"), timeout=30.0),),
        server=CommandSpec(argv=("/bin/sleep", "600")),
        resources=Resources(memory_mb=128, vcpus=1, volume_gb=1),
        init_files=(
            FileSpec(path=f"{config_dir}/init.sh", content=script),
            FileSpec(path=f"{config_dir}/password", content="hunter2-secret\n", secret=True),
        ),
        stop_timeout=5.0,
    )


def test_init_runs_once_as_the_user_and_removes_secret_files(instances: Instances, port: int) -> None:
    runtime = instances.runtime(use_loop_volumes="false")
    placement = instances.prepare(runtime, Resources(memory_mb=128, vcpus=1, volume_gb=1), port)
    (Path(placement.data_dir) / "half-done").write_text("left by a crashed attempt")
    script = (
        'id -u > "$HOME/ran-as"; cat ' + f"{placement.config_dir}/password" + ' > /dev/null; echo run >> "$HOME/runs"\n'
    )
    spec = _init_workload(placement.data_dir, placement.config_dir, placement.instance_id, script)

    runtime.initialise(placement, spec)
    runtime.initialise(placement, spec)  # the marker guards it

    data = Path(placement.data_dir)
    assert not (data / "half-done").exists()
    assert (data / "ran-as").read_text().strip() == str(pwd.getpwnam(placement.os_user).pw_uid)
    assert (data / "runs").read_text() == "run\n"
    assert not (Path(placement.config_dir) / "password").exists()
    assert (Path(placement.config_dir) / "init.sh").stat().st_mode & 0o777 == 0o600
    runtime.start(placement, spec)
    assert runtime.observe(placement).running


def test_a_failing_init_raises_permanent_error_with_output_but_no_secret(instances: Instances, port: int) -> None:
    runtime = instances.runtime(use_loop_volumes="false", use_cgroups="false")
    placement = instances.prepare(runtime, Resources(memory_mb=128, vcpus=1, volume_gb=1), port)
    script = f"echo starting; cat {placement.config_dir}/password; echo 'initdb: disk on fire' >&2; exit 3\n"
    spec = _init_workload(placement.data_dir, placement.config_dir, placement.instance_id, script)
    with pytest.raises(PermanentError) as failed:
        runtime.initialise(placement, spec)
    assert "exit status 3" in failed.value.message
    assert "disk on fire" in failed.value.details
    assert "hunter2" not in failed.value.details and "hunter2" not in failed.value.message
    with pytest.raises(PermanentError, match="not initialised"):
        runtime.start(placement, spec)

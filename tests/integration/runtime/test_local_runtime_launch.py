"""How the local runtime launches a server: as the instance's user, inside its cgroup from the first instruction."""

from __future__ import annotations

import os
import pwd
import textwrap
import time
from pathlib import Path

import pytest
from local_runtime_support import Instances

from reddwarf.domain.errors import PermanentError
from reddwarf.domain.workload import CommandSpec, Resources, WorkloadSpec

RESOURCES = Resources(memory_mb=160, vcpus=1, volume_gb=1)


def wait_for_file(path: Path, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("END\n"):
            return path.read_text()
        time.sleep(0.01)
    raise AssertionError(f"{path} was not written within {timeout}s")


def test_the_server_starts_as_the_instance_user_already_inside_its_cgroup(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    mode = runtime.isolation_report()["memory_cpu_limits"]
    placement = instances.prepare(runtime, RESOURCES, port)
    report = Path(placement.run_dir) / "birth"
    # The very first thing the server does is to record where it is: no sweep could have moved it yet.
    script = textwrap.dedent(
        f"""
        cat /proc/self/cgroup > {report}.tmp
        id -u >> {report}.tmp; id -G >> {report}.tmp
        echo END >> {report}.tmp
        mv {report}.tmp {report}
        exec sleep 600
        """
    )
    spec = WorkloadSpec(
        instance_id=placement.instance_id,
        init=(),
        server=CommandSpec(argv=("/bin/sh", "-c", script)),
        resources=RESOURCES,
        stop_timeout=5.0,
    )
    runtime.start(placement, spec)
    lines = wait_for_file(report).splitlines()
    entry = pwd.getpwnam(placement.os_user)
    assert lines[-3:] == [str(entry.pw_uid), str(entry.pw_gid), "END"]  # no supplementary groups either
    own = f"/{instances.cgroup_parent}/{placement.os_user}"
    if mode == "v1":
        by_controller = {line.split(":")[1]: line.split(":")[2] for line in lines[:-3]}
        memory = next(path for names, path in by_controller.items() if "memory" in names.split(","))
        cpu = next(path for names, path in by_controller.items() if "cpu" in names.split(","))
        assert (memory, cpu) == (own, own)
    elif mode == "v2":
        assert f"0::{own}" in lines
    else:
        pytest.skip("this host offers no cgroups")
    seen = runtime.observe(placement)
    assert seen.running and seen.pid is not None
    assert os.getpgid(seen.pid) == seen.pid  # its own session and process group, as before


def test_a_server_program_that_does_not_exist_is_a_permanent_error(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    spec = WorkloadSpec(
        instance_id=placement.instance_id,
        init=(),
        server=CommandSpec(argv=("no-such-database-server", "--port", str(port))),
        resources=RESOURCES,
        stop_timeout=5.0,
    )
    with pytest.raises(PermanentError, match="no-such-database-server"):
        runtime.start(placement, spec)
    assert not runtime.observe(placement).running

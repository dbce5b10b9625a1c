"""What one instance can take from the host: a bounded number of processes, no privilege regained through a
setuid binary, and temp files on its own volume instead of the host's shared /tmp and /var/tmp."""

from __future__ import annotations

import os
import stat
import textwrap
import time
from dataclasses import replace
from pathlib import Path

from local_runtime_support import Instances
from tests.support.server import wait_for

from reddwarf.domain.workload import CommandSpec, FileSpec, Resources, WorkloadSpec
from reddwarf.runtimes.local.cgroups import Cgroups

RESOURCES = Resources(memory_mb=256, vcpus=1, volume_gb=1)
PIDS_MAX = 40
# More than the limit, few enough to be harmless on the host if no limit holds (the test then fails).
FORKS_TRIED = 150


def _wait_for_report(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("END\n"):
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written within {timeout}s")


def _server(
    placement_id: str, argv: tuple[str, ...], init: tuple[CommandSpec, ...] = (), init_files: tuple[FileSpec, ...] = ()
) -> WorkloadSpec:
    return WorkloadSpec(
        instance_id=placement_id, init=init, server=CommandSpec(argv=argv), resources=RESOURCES, stop_timeout=5.0,
        init_files=init_files,
    )


def test_a_fork_loop_inside_an_instance_stops_at_its_pids_limit(instances: Instances, port: int) -> None:
    runtime = instances.runtime(pids_max=PIDS_MAX)
    placement = instances.prepare(runtime, RESOURCES, port)
    report = Path(placement.run_dir) / "forks"
    # Fork children that sleep until told to go, until fork fails or FORKS_TRIED is reached; report, clean up.
    script = textwrap.dedent(
        f"""
        import errno, os, signal, sys
        children, failure = [], "none"
        for _ in range({FORKS_TRIED}):
            try:
                pid = os.fork()
            except OSError as exc:
                failure = errno.errorcode.get(exc.errno, str(exc.errno))
                break
            if pid == 0:
                signal.pause()
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        for pid in children:
            os.waitpid(pid, 0)
        with open("{report}.tmp", "w") as out:
            out.write(f"{{len(children)}} {{failure}}\\nEND\\n")
        os.rename("{report}.tmp", "{report}")
        signal.pause()
        """
    )
    runtime.start(placement, _server(placement.instance_id, ("/usr/bin/python3", "-c", script)))
    forked, failure = _wait_for_report(report).split("\n")[0].split()
    assert failure == "EAGAIN"  # fork refused by the cgroup, not by anything else
    assert int(forked) < PIDS_MAX
    assert runtime._cgroups.pids_limit(placement.os_user) == PIDS_MAX
    assert runtime.isolation_report()["pids_limit"].startswith(f"{PIDS_MAX} processes")


def test_server_and_init_commands_run_with_no_new_privs(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    at_init = Path(placement.data_dir) / "init-status"
    at_start = Path(placement.run_dir) / "server-status"
    spec = _server(
        placement.instance_id,
        ("/bin/sh", "-c", f"grep NoNewPrivs /proc/self/status > {at_start}.tmp; echo END >> {at_start}.tmp; "
         f"mv {at_start}.tmp {at_start}; exec sleep 600"),
        init=(CommandSpec(argv=("/bin/sh", f"{placement.config_dir}/init.sh"), timeout=30.0),),
        init_files=(FileSpec(path=f"{placement.config_dir}/init.sh",
                             content=f"grep NoNewPrivs /proc/self/status > {at_init}\n"),),
    )
    runtime.initialise(placement, spec)
    assert at_init.read_text().split() == ["NoNewPrivs:", "1"]
    runtime.start(placement, spec)
    assert _wait_for_report(at_start).split()[:2] == ["NoNewPrivs:", "1"]
    seen = runtime.observe(placement)
    assert seen.running and seen.pid is not None
    status = Path(f"/proc/{seen.pid}/status").read_text()
    assert "NoNewPrivs:\t1" in status


def test_temp_files_of_an_instance_go_to_its_private_dir_on_its_volume(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    report = Path(placement.run_dir) / "temp"
    script = textwrap.dedent(
        f"""
        import os, tempfile
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            handle.write(b"x")
        with open("{report}.tmp", "w") as out:
            out.write(handle.name + "\\n" + os.environ["TMPDIR"] + "\\nEND\\n")
        os.rename("{report}.tmp", "{report}")
        """
    )
    runtime.start(placement, _server(placement.instance_id, ("/usr/bin/python3", "-c", script)))
    made, tmpdir, _ = _wait_for_report(report).split("\n", 2)
    volume = Path(placement.data_dir).parent
    assert Path(made).parent == Path(tmpdir) == volume / "tmp"
    info = os.stat(tmpdir)
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == Path(placement.data_dir).stat().st_uid != 0
    if runtime.isolation_report()["volumes"] == "loop":  # on the instance's own filesystem, counted there
        assert os.stat(made).st_dev == os.stat(placement.data_dir).st_dev != os.stat("/tmp").st_dev


def test_a_server_started_before_the_pids_limit_existed_is_moved_under_it(instances: Instances, port: int) -> None:
    older = instances.runtime()
    detection = older._cgroups.detection
    # The runtime of an earlier version: memory and cpu hierarchies only.
    older._cgroups = Cgroups(replace(detection, pids=False), older._settings.cgroup_root, instances.cgroup_parent)
    placement = instances.prepare(older, RESOURCES, port)
    older.start(placement, _server(placement.instance_id, ("/bin/sleep", "600")))
    pid = older.observe(placement).pid
    assert pid is not None

    upgraded = instances.runtime(pids_max=PIDS_MAX)
    upgraded.prepare(placement, RESOURCES)  # what the next reconcile does: the pids cgroup now exists
    assert upgraded.observe(placement).running

    assert pid in upgraded._cgroups.members_of_every_hierarchy(placement.os_user)
    pids_line = next(line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                     if line.split(":")[1] == "pids")
    assert pids_line.endswith(f"/{instances.cgroup_parent}/{placement.os_user}")


def test_what_a_server_logs_lands_on_its_own_volume(instances: Instances, port: int) -> None:
    """A tenant can make its server log without bound (PostgreSQL logs a 100 MB value in one ERROR line):
    the server's output goes to a log directory on the instance's volume, so it fills that volume only,
    never the host's filesystem that the store and the other instances' images live on."""
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    marker = "logged-" + os.urandom(4).hex()
    script = f"import sys, time\nprint({marker!r}, flush=True)\ntime.sleep(60)\n"
    runtime.start(placement, _server(placement.instance_id, ("/usr/bin/python3", "-c", script)))
    log_dir = Path(placement.log_dir)

    def logged() -> list[Path]:
        return [p for p in log_dir.iterdir() if marker in p.read_text(errors="replace")] if log_dir.is_dir() else []

    found: list[Path] = wait_for(logged, 30, f"the server's output to reach {log_dir}")
    assert log_dir.parent == Path(placement.data_dir).parent  # beside data/ and tmp/, on the volume
    if runtime.isolation_report()["volumes"] == "loop":
        assert os.stat(found[0]).st_dev == os.stat(placement.data_dir).st_dev != os.stat(placement.config_dir).st_dev

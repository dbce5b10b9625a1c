"""The local runtime with a real workload: a tiny TCP server run by Debian's python3 as the instance user."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from local_runtime_support import Instances

from reddwarf.domain.errors import PermanentError
from reddwarf.domain.workload import CommandSpec, FileSpec, Placement, Resources, WorkloadSpec
from reddwarf.runtimes.local import LocalRuntime
from reddwarf.runtimes.local.paths import layout

SYSTEM_PYTHON = "/usr/bin/python3"
RESOURCES = Resources(memory_mb=128, vcpus=1, volume_gb=1)

SERVER = textwrap.dedent(
    """
    import os, signal, socket, sys

    address, port, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    helper = os.fork()
    if helper == 0:
        def on_term(signum, frame):
            with open(os.path.join(run_dir, "helper-got-term"), "w") as out:
                out.write("yes")
            os._exit(0)
        signal.signal(signal.SIGTERM, on_term)
        while True:
            signal.pause()
    with open(os.path.join(run_dir, "helper.pid"), "w") as out:
        out.write(str(helper))
    listener = socket.socket()
    listener.bind((address, port))
    listener.listen()
    while True:
        connection, _ = listener.accept()
        connection.sendall(f"uid={os.getuid()}\\n".encode())
        connection.close()
    """
)


def workload(placement: Placement, resources: Resources = RESOURCES) -> WorkloadSpec:
    script = f"{placement.config_dir}/server.py"
    return WorkloadSpec(
        instance_id=placement.instance_id,
        init=(),
        server=CommandSpec(argv=(SYSTEM_PYTHON, script, placement.address, str(placement.port), placement.run_dir)),
        resources=resources,
        files=(FileSpec(path=script, content=SERVER, mode=0o644),),
        stop_timeout=10.0,
    )


def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def greeting(placement: Placement) -> str | None:
    try:
        with socket.create_connection((placement.address, placement.port), timeout=1.0) as conn:
            return conn.makefile().readline().strip()
    except OSError:
        return None


def proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def test_server_runs_as_its_own_user_in_private_dirs_and_start_is_idempotent(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    spec = workload(placement)
    runtime.start(placement, spec)
    uid = pwd.getpwnam(placement.os_user).pw_uid
    assert eventually(lambda: greeting(placement) == f"uid={uid}")
    first = runtime.observe(placement)
    assert first.running and first.pid is not None and first.started_at is not None
    for directory in (placement.data_dir, placement.config_dir, placement.log_dir, placement.run_dir):
        info = os.stat(directory)
        assert (info.st_uid, info.st_mode & 0o777) == (uid, 0o700)
    assert abs(first.started_at - time.time()) < 60

    runtime.start(placement, spec)
    assert runtime.observe(placement).pid == first.pid
    assert greeting(placement) == f"uid={uid}"


def test_server_outlives_the_control_plane_process_that_started_it(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    starter = textwrap.dedent(
        f"""
        from reddwarf.runtimes.local import LocalRuntime, LocalRuntimeSettings
        from reddwarf.domain.workload import Placement, CommandSpec, FileSpec, WorkloadSpec, Resources
        import json, sys
        settings = LocalRuntimeSettings.model_validate_json({runtime._settings.model_dump_json()!r})
        placement = Placement(**json.loads(sys.argv[1]))
        spec = WorkloadSpec(
            instance_id=placement.instance_id, init=(),
            server=CommandSpec(argv=tuple(json.loads(sys.argv[2]))),
            resources=Resources(memory_mb=128, vcpus=1, volume_gb=1),
            files=(FileSpec(path=placement.config_dir + "/server.py", content=sys.stdin.read(), mode=0o644),),
        )
        LocalRuntime(settings).start(placement, spec)
        """
    )
    import dataclasses
    import json

    spec = workload(placement)
    subprocess.run(
        [sys.executable, "-c", starter, json.dumps(dataclasses.asdict(placement)), json.dumps(spec.server.argv)],
        input=SERVER,
        text=True,
        check=True,
        timeout=60,
    )
    fresh = instances.runtime()
    seen = fresh.observe(placement)
    assert seen.running, seen.exit_reason
    assert eventually(lambda: greeting(placement) is not None)
    fresh.start(placement, spec)
    assert fresh.observe(placement).pid == seen.pid


def test_kill_9_is_seen_as_not_running_and_leaves_no_zombie(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    runtime.start(placement, workload(placement))
    pid = runtime.observe(placement).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert eventually(lambda: not runtime.observe(placement).running)
    seen = runtime.observe(placement)
    assert "SIGKILL" in seen.exit_reason or "exited" in seen.exit_reason
    assert proc_state(pid) is None  # reaped: neither alive nor a zombie

    runtime.start(placement, workload(placement))  # the reconciler restarts what died
    assert eventually(lambda: greeting(placement) is not None)
    assert runtime.observe(placement).pid != pid


def test_a_server_exit_is_told_at_once_and_a_stopped_server_seen_without_a_probe(
    instances: Instances, port: int
) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    runtime.start(placement, workload(placement))
    told: list[str] = []
    heard = threading.Event()
    runtime.watch_exits(lambda instance_id: (told.append(instance_id), heard.set()))
    seen = runtime.observe(placement)  # the first look watches the server
    assert seen.running and not seen.stopped and seen.pid is not None

    os.kill(seen.pid, signal.SIGSTOP)
    assert eventually(lambda: runtime.observe(placement).stopped)
    os.kill(seen.pid, signal.SIGCONT)
    assert eventually(lambda: not runtime.observe(placement).stopped)

    os.kill(seen.pid, signal.SIGKILL)
    assert heard.wait(10), "the exit was never told"
    assert told == [placement.instance_id]
    after = runtime.observe(placement)
    assert not after.running and "SIGKILL" in after.exit_reason  # reaped as it was told
    assert proc_state(seen.pid) is None


def test_stop_signals_the_whole_process_group(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    spec = workload(placement)
    runtime.start(placement, spec)
    helper_file = Path(placement.run_dir) / "helper.pid"
    assert eventually(helper_file.exists)
    helper = int(helper_file.read_text())
    server = runtime.observe(placement).pid
    assert server is not None

    runtime.stop(placement, spec)
    assert (Path(placement.run_dir) / "helper-got-term").read_text() == "yes"
    assert proc_state(server) is None  # our child: reaped at once
    assert eventually(lambda: proc_state(helper) is None)  # orphaned grandchild: init reaps it
    assert not runtime.observe(placement).running
    runtime.stop(placement, spec)  # idempotent


def test_destroy_leaves_no_process_dir_mount_cgroup_or_user(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    runtime.start(placement, workload(placement))
    pid = runtime.observe(placement).pid
    paths = layout(runtime._settings, placement.instance_id)
    cgroup = Path("/sys/fs/cgroup/memory") / instances.cgroup_parent / placement.os_user
    if runtime.isolation_report()["memory_cpu_limits"] == "v1":
        assert cgroup.is_dir()

    runtime.destroy(placement)
    runtime.destroy(placement)  # idempotent

    assert pid is not None and proc_state(pid) is None
    assert not paths.instance_dir.exists() and not Path(placement.socket_dir).exists()
    assert str(paths.volume_dir) not in Path("/proc/self/mountinfo").read_text()
    assert not cgroup.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(placement.os_user)
    assert not runtime.observe(placement).running


def test_addresses_are_never_shared_and_held_pairs_are_not_bindable(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    first = instances.prepare(runtime, RESOURCES, port)
    runtime.start(first, workload(first))
    assert eventually(lambda: greeting(first) is not None)
    assert not runtime.bindable(first.address, first.port)

    second = instances.prepare(runtime, RESOURCES, port)
    runtime.start(second, workload(second))
    assert second.address != first.address
    assert eventually(lambda: greeting(second) is not None)

    with socket.socket() as wildcard:
        wildcard.bind(("0.0.0.0", 0))
        wildcard.listen()
        held = wildcard.getsockname()[1]
        assert not runtime.bindable("127.0.77.200", held)
    assert runtime.bindable("127.0.77.200", held)
    with socket.socket(socket.AF_INET6) as dual_stack:  # [::] without IPV6_V6ONLY holds IPv4 too
        dual_stack.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        dual_stack.bind(("::", 0))
        dual_stack.listen()
        assert not runtime.bindable("127.0.77.200", dual_stack.getsockname()[1])


def test_a_bad_workload_fails_permanently_with_a_clear_message(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    outside = WorkloadSpec(
        instance_id=placement.instance_id,
        init=(),
        server=CommandSpec(argv=("/bin/true",)),
        resources=RESOURCES,
        files=(FileSpec(path="/etc/reddwarf-should-not-exist", content="x"),),
    )
    with pytest.raises(PermanentError, match="outside the directories"):
        runtime.start(placement, outside)
    assert not Path("/etc/reddwarf-should-not-exist").exists()


def test_root_never_follows_a_symlink_the_tenant_planted(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    victim = Path(placement.config_dir).parent / "victim"  # root-owned, outside the user's dirs
    victim.write_text("untouched")
    os.symlink(victim, Path(placement.config_dir) / "server.py")
    runtime.start(placement, workload(placement))
    assert victim.read_text() == "untouched"
    assert eventually(lambda: greeting(placement) is not None)


def test_runtime_without_cgroups_or_loop_volumes_still_runs_and_says_so(instances: Instances, port: int) -> None:
    runtime: LocalRuntime = instances.runtime(use_cgroups="false", use_loop_volumes="false")
    report = runtime.isolation_report()
    assert report["memory_cpu_limits"] == "none" and "REDDWARF_LOCAL_USE_CGROUPS" in report["memory_cpu_limits_detail"]
    assert report["volumes"] == "directory"
    placement = instances.prepare(runtime, RESOURCES, port)
    runtime.start(placement, workload(placement))
    assert eventually(lambda: greeting(placement) is not None)
    seen = runtime.observe(placement)
    assert seen.running
    assert seen.volume_size_bytes == 1024**3 and seen.volume_used_bytes is not None
    runtime.destroy(placement)
    assert not Path(placement.data_dir).exists()

"""Freezing an instance's filesystem for a snapshot: writes wait while it is frozen and go on after; a worker
killed while holding a freeze leaves nothing frozen (the holder sees its pipe close), and a worker paused
while holding one cannot hold it past the deadline (the copy it was making is then refused)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from local_runtime_support import Instances

from reddwarf.domain.errors import TemporaryError
from reddwarf.domain.workload import Resources
from reddwarf.runtimes.local.freezer import frozen

RESOURCES = Resources(memory_mb=256, vcpus=1, volume_gb=1)
DEADLINE = 1.0


def _volume(instances: Instances, port: int) -> Path:
    runtime = instances.runtime()
    if runtime.isolation_report()["volumes"] != "loop":
        pytest.fail("freezing needs loop volumes (root and /dev/loop-control)")
    placement = instances.prepare(runtime, RESOURCES, port)
    return Path(placement.data_dir).parent


def _write_and_sync(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
    finally:
        os.close(fd)


def _timed_write(path: Path) -> float:
    """Seconds until a write and fsync in the volume complete (they wait while it is frozen)."""
    started = time.monotonic()
    _write_and_sync(path)
    return time.monotonic() - started


def _holder_child(volume: Path, deadline: float) -> subprocess.Popen[str]:
    """A process standing in for a worker: it freezes the volume and then holds the freeze indefinitely."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from reddwarf.runtimes.local.freezer import frozen
        try:
            with frozen(Path({str(volume)!r}), {deadline!r}):
                print("frozen", flush=True)
                time.sleep(600)
        except Exception as exc:
            print("failed:", exc, flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "frozen"
    return child


def test_writes_wait_for_the_thaw_and_then_go_on(instances: Instances, port: int) -> None:
    volume = _volume(instances, port)
    done: list[float] = []
    with frozen(volume, deadline=10.0):
        writer = threading.Thread(target=lambda: (_write_and_sync(volume / "during"), done.append(time.monotonic())))
        writer.start()
        writer.join(0.3)
        assert not done  # still waiting: the filesystem is frozen
        thawing = time.monotonic()
    writer.join(10.0)
    assert done and done[0] >= thawing
    assert _timed_write(volume / "after") < 1.0


def test_a_worker_killed_while_holding_a_freeze_leaves_nothing_frozen(instances: Instances, port: int) -> None:
    volume = _volume(instances, port)
    child = _holder_child(volume, deadline=30.0)  # the deadline is not what ends it here
    killed = time.monotonic()
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=10.0)
    assert _timed_write(volume / "after-kill") + (time.monotonic() - killed) < 1.0


def test_a_paused_worker_cannot_hold_a_freeze_past_its_deadline(instances: Instances, port: int) -> None:
    volume = _volume(instances, port)
    child = _holder_child(volume, deadline=DEADLINE)
    paused = time.monotonic()
    child.send_signal(signal.SIGSTOP)
    try:
        _write_and_sync(volume / "while-paused")
        assert time.monotonic() - paused < DEADLINE + 0.5
    finally:
        child.send_signal(signal.SIGCONT)
        child.kill()  # it sleeps in its body; the freeze ended already
        child.communicate(timeout=10.0)


def test_a_freeze_that_outlived_its_deadline_fails_the_copy(instances: Instances, port: int) -> None:
    volume = _volume(instances, port)
    with pytest.raises(TemporaryError, match="deadline"), frozen(volume, deadline=0.2):
        time.sleep(0.5)  # a copy slower than the deadline
    assert _timed_write(volume / "after-late") < 1.0


def test_a_directory_with_no_filesystem_mounted_there_is_never_frozen(tmp_path: Path) -> None:
    """A volume unmounted meanwhile must not make the freeze fall through to the filesystem beneath (often
    the host's root)."""
    with pytest.raises(TemporaryError, match="no filesystem is mounted there"), frozen(tmp_path):
        pytest.fail("the body ran under a freeze of the wrong filesystem")

"""Servers' exits seen by pidfd (`runtimes/local/exits.py`), with real processes: an exit is heard at once from
the watcher's own thread, without anyone polling; a pid now held by another process is never watched."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from tests.support.server import wait_for

from reddwarf.runtimes.local import processes
from reddwarf.runtimes.local.exits import ExitWatcher


class Heard:
    """A listener: the keys it was told, and the threads it was told from."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.threads: set[str] = set()
        self.told = threading.Event()

    def __call__(self, key: str) -> None:
        self.keys.append(key)
        self.threads.add(threading.current_thread().name)
        self.told.set()


def orphan() -> int:
    """A process that is not ours (its parent exits at once), like a server an earlier control plane started."""
    done = subprocess.run(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                          check=True, timeout=10)
    return int(done.stdout)


@pytest.fixture
def sleepers() -> Iterator[list[int]]:
    pids = [orphan(), orphan()]
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def record_of(pid: int) -> processes.ServerRecord:
    stat = processes.read_stat(pid)
    assert stat is not None
    return processes.ServerRecord(pid=pid, start_ticks=stat.start_ticks, uid=0)


def test_an_exit_is_heard_at_once_from_the_watchers_thread(sleepers: list[int]) -> None:
    watcher, heard = ExitWatcher(), Heard()
    watcher.listen(heard)
    record = record_of(sleepers[0])
    assert watcher.watch("i1", record) and watcher.watching("i1", record)
    killed = time.monotonic()
    os.kill(sleepers[0], signal.SIGKILL)
    assert heard.told.wait(10), "the exit was never heard"
    assert time.monotonic() - killed < 1.0
    assert heard.keys == ["i1"] and heard.threads == {"server-exits"}  # told by the watcher: nobody polled
    assert not watcher.watching("i1", record) and watcher.state("i1", record) is None
    assert watcher.watched_count() == 0


def test_a_record_whose_pid_another_process_now_holds_is_not_watched(sleepers: list[int]) -> None:
    watcher, heard = ExitWatcher(), Heard()
    watcher.listen(heard)
    current = record_of(sleepers[0])
    # The recorded server had this pid before the process now holding it: an earlier start time.
    recorded = dataclasses.replace(current, start_ticks=current.start_ticks - 1)
    assert not watcher.watch("reused", recorded)
    assert not watcher.watching("reused", recorded) and watcher.state("reused", recorded) is None
    assert watcher.watch("control", record_of(sleepers[1]))
    os.kill(sleepers[0], signal.SIGKILL)  # the process on the reused pid exits: not the recorded server's news
    os.kill(sleepers[1], signal.SIGKILL)
    assert heard.told.wait(10)
    wait_for(lambda: watcher.watched_count() == 0, 10, "the control's exit to be handled")
    assert heard.keys == ["control"]


def test_the_state_of_a_watched_server_shows_it_stopped_by_a_signal(sleepers: list[int]) -> None:
    watcher = ExitWatcher()
    record = record_of(sleepers[0])
    assert watcher.watch("i1", record)
    assert watcher.state("i1", record) == "S"
    os.kill(sleepers[0], signal.SIGSTOP)
    wait_for(lambda: watcher.state("i1", record) == "T", 10, "the stopped state")
    os.kill(sleepers[0], signal.SIGCONT)
    wait_for(lambda: watcher.state("i1", record) == "S", 10, "the running state again")
    other = dataclasses.replace(record, start_ticks=record.start_ticks + 1)
    assert watcher.state("i1", other) is None  # only the watched record's


def test_a_zombie_is_not_watched_and_a_forgotten_watch_tells_nothing(sleepers: list[int]) -> None:
    watcher, heard = ExitWatcher(), Heard()
    watcher.listen(heard)
    child = subprocess.Popen(["true"])
    try:
        wait_for(lambda: (s := processes.read_stat(child.pid)) is not None and s.dead, 10, "the child to exit")
        zombie = record_of(child.pid)
        assert not watcher.watch("zombie", zombie)
    finally:
        child.wait()
    assert watcher.watch("forgotten", record_of(sleepers[0]))
    assert watcher.watch("control", record_of(sleepers[1]))
    watcher.forget("forgotten")
    os.kill(sleepers[0], signal.SIGKILL)
    os.kill(sleepers[1], signal.SIGKILL)
    assert heard.told.wait(10)
    wait_for(lambda: watcher.watched_count() == 0, 10, "the control's exit to be handled")
    assert heard.keys == ["control"]

"""Processes of the local runtime: /proc parsing, pidfiles, liveness, process groups and reaping.

A server is identified by pid *and* start time (field 22 of /proc/<pid>/stat, in clock ticks since
boot), because pids are reused. Liveness comes from /proc only: a zombie still answers `kill(pid, 0)`,
and a server started by a previous control-plane process is not our child. Children we did start are
kept in a `Reaper` and polled, so none of them stays a zombie.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reddwarf.runtimes.local.files import write_private

log = logging.getLogger(__name__)

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_POLL_INTERVAL = 0.05
_FIRST_POLL_INTERVAL = 0.002


# State letters (field 3 of /proc/<pid>/stat) of a process that has exited, and of one stopped by a signal.
DEAD_STATES = frozenset("ZXx")
STOPPED_STATES = frozenset("Tt")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the runtime needs."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    start_ticks: int

    @property
    def dead(self) -> bool:
        """Zombie (Z) or dead (X): the process runs no more, whatever `kill(pid, 0)` says."""
        return self.state in DEAD_STATES

    @property
    def stopped(self) -> bool:
        """Stopped by a signal (T: SIGSTOP, SIGTSTP) or under a tracer (t): alive, but it answers no one.
        The kernel still completes TCP handshakes on its listening socket, so a probe would only time out."""
        return self.state in STOPPED_STATES


def parse_stat(text: str) -> ProcStat:
    """Parse the text of /proc/<pid>/stat. `comm` may hold spaces and parentheses: split at the last ')'."""
    head, sep, tail = text.rpartition(")")
    pid_text, open_paren, comm = head.partition(" (")
    if not sep or not open_paren:
        raise ValueError("not a /proc/<pid>/stat line")
    fields = tail.split()
    # fields[0] is field 3 (state); field N is fields[N - 3].
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        start_ticks=int(fields[19]),
    )


def _read_proc_file(path: str) -> bytes | None:
    """The bytes of a /proc file, or None when its process is gone (ENOENT/ESRCH).

    Plain `os.open`/`os.read` of bytes: `Path.read_text` costs about three times as much per file (a text
    wrapper, an encoding look-up), which adds up when every process of the host is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        return b"".join(chunks)
    except ProcessLookupError:
        return None
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return None
        raise
    finally:
        os.close(fd)


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """The stat of `pid`, or None when there is no such process (any more)."""
    data = _read_proc_file(f"{proc}/{pid}/stat")
    return None if data is None else parse_stat(data.decode("utf-8", "surrogateescape"))


def parse_real_uid(status_text: str) -> int | None:
    """The real uid from the text of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def read_real_uid(pid: int, proc: Path = PROC) -> int | None:
    try:
        data = _read_proc_file(f"{proc}/{pid}/status")
    except OSError:
        return None
    return None if data is None else _status_real_uid(data)


def parse_boot_time(stat_text: str) -> float:
    """`btime` (boot time, seconds since the epoch) from the text of /proc/stat."""
    for line in stat_text.splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


@functools.cache
def boot_time(proc: Path = PROC) -> float:
    """When the host booted (read once: it does not move while this process runs)."""
    return parse_boot_time((proc / "stat").read_text())


def all_pids(proc: Path = PROC) -> Iterator[int]:
    for name in os.listdir(proc):
        if name.isdigit():
            yield int(name)


def live_pids_of_user(uid: int, proc: Path = PROC) -> list[int]:
    """Every non-zombie process whose real uid is `uid` (each instance has a uid of its own).

    One read of /proc/<pid>/status per process (its State and Uid lines), across every process of the host.
    The real uid, not the owner of /proc/<pid>, so that a setuid program run by the instance's user is
    still found."""
    return live_pids_by_uid(proc).get(uid, [])


def live_pids_by_uid(proc: Path = PROC) -> dict[int, list[int]]:
    """Every non-zombie process of the host by real uid: one pass over /proc for every instance at once."""
    found: dict[int, list[int]] = {}
    for pid in all_pids(proc):
        try:
            data = _read_proc_file(f"{proc}/{pid}/status")
        except OSError:
            continue
        if data is None or _status_dead(data):
            continue
        uid = _status_real_uid(data)
        if uid is not None:
            found.setdefault(uid, []).append(pid)
    return found


def _status_field(status: bytes, name: bytes) -> bytes | None:
    """The value of line `name` (e.g. b"Uid:") of a /proc/<pid>/status text, without the name."""
    if status.startswith(name):
        start = len(name)
    else:
        at = status.find(b"\n" + name)
        if at < 0:
            return None
        start = at + 1 + len(name)
    end = status.find(b"\n", start)
    return status[start : end if end >= 0 else None]


def _status_real_uid(status: bytes) -> int | None:
    value = _status_field(status, b"Uid:")
    return None if value is None else int(value.split()[0])


def _status_dead(status: bytes) -> bool:
    value = _status_field(status, b"State:")
    return value is None or value.split()[0] in (b"Z", b"X")


def live_pids_of_group(pgid: int, proc: Path = PROC) -> list[int]:
    found = []
    for pid in all_pids(proc):
        stat = read_stat(pid, proc)
        if stat is not None and stat.pgrp == pgid and not stat.dead:
            found.append(pid)
    return found


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """What the pidfile holds: enough to recognise the server after a control-plane restart."""

    pid: int
    start_ticks: int
    uid: int

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "start_ticks": self.start_ticks, "uid": self.uid})

    @classmethod
    def from_json(cls, text: str) -> ServerRecord:
        data = json.loads(text)
        return cls(pid=int(data["pid"]), start_ticks=int(data["start_ticks"]), uid=int(data["uid"]))


def read_record(pidfile: Path) -> ServerRecord | None:
    """The recorded server, or None when there is none or the file is unreadable (a torn write)."""
    try:
        return ServerRecord.from_json(pidfile.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable pidfile %s", pidfile)
        return None


def write_record(pidfile: Path, record: ServerRecord) -> None:
    write_private(pidfile, record.to_json())


def judge(record: ServerRecord, proc: Path = PROC) -> tuple[bool, str]:
    """Is the recorded server alive? Returns (alive, reason when not)."""
    alive, reason, _ = inspect(record, proc)
    return alive, reason


def inspect(record: ServerRecord, proc: Path = PROC) -> tuple[bool, str, bool]:
    """One read of /proc/<pid>/stat: is the recorded server alive (with the reason when not), and is it
    stopped by a signal."""
    stat = read_stat(record.pid, proc)
    alive, reason = _judge_stat(record, stat)
    return alive, reason, alive and stat is not None and stat.stopped


def _judge_stat(record: ServerRecord, stat: ProcStat | None) -> tuple[bool, str]:
    if stat is None:
        return False, f"process {record.pid} has exited"
    if stat.start_ticks != record.start_ticks:
        return False, f"process {record.pid} has exited (pid reused by another process)"
    if stat.dead:
        return False, f"process {record.pid} has exited (zombie)"
    return True, ""


def started_at(record: ServerRecord, proc: Path = PROC) -> float:
    return boot_time(proc) + record.start_ticks / CLOCK_TICKS


def wait_until(condition: Callable[[], bool], timeout: float, tick: Callable[[], None]) -> bool:
    """Poll `condition` (calling `tick` before each check) until true or `timeout` seconds pass.

    The first polls come quickly (a killed process is usually gone within milliseconds), then the
    interval doubles up to `_POLL_INTERVAL`."""
    deadline = time.monotonic() + timeout
    interval = _FIRST_POLL_INTERVAL
    while True:
        tick()
        if condition():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, _POLL_INTERVAL)


def kill_of_user(uid: int, pids: list[int], proc: Path = PROC) -> None:
    """SIGKILL those of `pids` that are processes of `uid`, through a pidfd opened before the uid is checked
    (a pid that was reused meanwhile, by any process of the host, is not signalled)."""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            continue
        try:
            if read_real_uid(pid, proc) == uid:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


REAP_EVERY = 0.25


class Reaper:
    """Keeps the `Popen` of every server this process started and polls them, so no zombie piles up.

    Thread-safe. Servers started by an earlier control-plane process are not our children: init reaps them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._exit_codes: dict[int, int] = {}
        self._last_reap = 0.0

    def adopt(self, child: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children[child.pid] = child
            self._exit_codes.pop(child.pid, None)

    def reap(self, *, force: bool = True) -> None:
        """Poll every child; forget the ones that exited (remembering their exit code). With `force` False
        (the health observer's frequent calls) it polls at most every `REAP_EVERY` seconds: one poll per
        child, for every observation of every instance, would cost the square of the number of servers."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_reap < REAP_EVERY:
                return
            self._last_reap = now
            for pid, child in list(self._children.items()):
                code = child.poll()
                if code is not None:
                    del self._children[pid]
                    self._exit_codes[pid] = code
                    log.info("server process %d exited with status %d", pid, code)

    def exit_code(self, pid: int) -> int | None:
        with self._lock:
            return self._exit_codes.get(pid)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"

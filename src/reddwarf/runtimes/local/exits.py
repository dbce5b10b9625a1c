"""Exits of the local runtime's servers, seen the moment they happen: one pidfd per server, one epoll, one thread.

A pidfd (`pidfd_open(2)`, Linux 5.3) refers to one process, not to a pid number: it becomes readable when
that process exits (a zombie has exited), and a pid reused later by another process does not make it
readable again nor hand it over. `ExitWatcher.watch` opens a server's pidfd and only then checks that the
process behind the pid is still the recorded one (its start time, `processes.inspect`): a pidfd opened
on a reused pid is thereby refused, and a server that exits right after the check makes its (already
open) pidfd readable. One thread waits on an epoll of every pidfd and tells the listeners (`listen`) the
instance whose server exited, so the health loop learns of a death within milliseconds without polling
anything: what is left to poll at rest is what no pidfd reports (a server stopped by a signal, a server
that runs but answers nothing).

For the first, each watch also holds the server's /proc/<pid>/stat open: `state` reads it again with one
`pread` (no path look-up, no open or close), and a descriptor opened on a process never shows another one.
A watch thus holds two descriptors per server.

Where the kernel has no pidfd (`ENOSYS`) or refuses it, or the process has no descriptor left, `watch` says so
(False) and the caller's own polling is the only way deaths are noticed. The first watch raises the process's
soft limit of open descriptors to its hard limit (often 1024 and 524288): two per server add up.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass

from reddwarf.runtimes.local import processes

log = logging.getLogger(__name__)

Listener = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class _Watch:
    pidfd: int
    stat_fd: int
    record: processes.ServerRecord


class ExitWatcher:
    """Watches servers by pidfd and calls every listener with the key (instance id) of one that exited.

    Thread-safe. A key's watch ends when its server exits (told once) or on `forget`; `watch` arms it again
    for a new server. The thread starts with the first watch and is a daemon: it holds nothing that must
    be flushed, and pidfds close with the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoll: select.epoll | None = None
        self._thread: threading.Thread | None = None
        self._listeners: list[Listener] = []
        # key -> the watch; pidfd -> key.
        self._watched: dict[str, _Watch] = {}
        self._keys: dict[int, str] = {}
        self._unavailable: str | None = None
        self._out_of_descriptors = False

    @property
    def unavailable(self) -> str | None:
        """Why pidfds cannot be used on this host (None: they can)."""
        return self._unavailable

    def listen(self, listener: Listener) -> None:
        """Call `listener(key)` (from the watcher's thread; it must return quickly) when a server exits."""
        with self._lock:
            self._listeners.append(listener)

    def watching(self, key: str, record: processes.ServerRecord) -> bool:
        """Whether `record`'s server is watched under `key` and has not been seen to exit (a dict look-up)."""
        watched = self._watched.get(key)
        return watched is not None and watched.record == record

    def state(self, key: str, record: processes.ServerRecord) -> str | None:
        """The state letter (field 3 of /proc/<pid>/stat: R, S, T, Z...) of `record`'s server, read from the
        watch's descriptor; None when it is not watched under `key` (or no longer readable: it exited)."""
        with self._lock:  # the watcher's thread may close the descriptor (and the number be reused) meanwhile
            watched = self._watched.get(key)
            if watched is None or watched.record != record:
                return None
            try:
                data = os.pread(watched.stat_fd, 1024, 0)
            except OSError:
                return None
        at = data.rfind(b") ")
        return chr(data[at + 2]) if 0 <= at < len(data) - 2 else None

    def watch(self, key: str, record: processes.ServerRecord) -> bool:
        """Watch the recorded server under `key` (replacing the watch of an earlier server). False, and no
        watch, when that server is not running (exited, a zombie, its pid taken by another process) or the
        host has no pidfd; the caller's own look at /proc says which."""
        with self._lock:
            watched = self._watched.get(key)
            if watched is not None and watched.record == record:
                return True
            if watched is not None:
                self._drop(key)
            if self._unavailable is not None:
                return False
            try:
                fd = os.pidfd_open(record.pid)
            except ProcessLookupError:
                return False
            except OSError as exc:
                if exc.errno in (errno.ENOSYS, errno.EPERM, errno.EACCES):
                    self._unavailable = f"pidfd_open: {exc.strerror}"
                    log.warning("servers' exits are seen by polling only: %s", self._unavailable)
                    return False
                if exc.errno in (errno.EMFILE, errno.ENFILE):  # two descriptors per server: raise RLIMIT_NOFILE
                    if not self._out_of_descriptors:
                        self._out_of_descriptors = True
                        log.warning("no descriptor left to watch the server of instance %s (%s): its exit is "
                                    "seen by the health rounds only", key, exc.strerror)
                    return False
                raise
            # After the opens: the descriptors refer to whatever process had the pid then; if that is the
            # recorded server now, it was then too (start times only grow), else the pid was reused.
            try:
                stat_fd = os.open(f"{processes.PROC}/{record.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                os.close(fd)
                return False
            try:
                stat = processes.parse_stat(os.pread(stat_fd, 1024, 0).decode("utf-8", "surrogateescape"))
            except (OSError, ValueError):
                stat = None
            if stat is None or stat.start_ticks != record.start_ticks or stat.dead:
                os.close(stat_fd)
                os.close(fd)
                return False
            epoll = self._running_epoll()
            epoll.register(fd, select.EPOLLIN)
            self._watched[key] = _Watch(fd, stat_fd, record)
            self._keys[fd] = key
            return True

    def forget(self, key: str) -> None:
        """Stop watching `key` (its instance is being destroyed); no listener hears of it."""
        with self._lock:
            self._drop(key)

    def watched_count(self) -> int:
        with self._lock:
            return len(self._watched)

    def _drop(self, key: str) -> None:
        watched = self._watched.pop(key, None)
        if watched is None:
            return
        self._keys.pop(watched.pidfd, None)
        if self._epoll is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(watched.pidfd)
        os.close(watched.pidfd)
        os.close(watched.stat_fd)

    def _running_epoll(self) -> select.epoll:
        if self._epoll is None:
            _raise_descriptor_limit()
            self._epoll = select.epoll()
            self._thread = threading.Thread(target=self._run, args=(self._epoll,), name="server-exits", daemon=True)
            self._thread.start()
        return self._epoll

    def _run(self, epoll: select.epoll) -> None:
        while True:
            try:
                events = epoll.poll()
            except InterruptedError:
                continue
            exited: list[str] = []
            with self._lock:
                listeners = list(self._listeners)
                for fd, _mask in events:
                    key = self._keys.get(fd)
                    # The fd may have been dropped (and its number reused by a newer watch) since the poll
                    # returned: only a pidfd that is readable now says its process exited.
                    if key is None or not _readable(fd):
                        continue
                    self._drop(key)
                    exited.append(key)
            for key in exited:
                log.debug("server of instance %s exited", key)
                for listener in listeners:
                    try:
                        listener(key)
                    except Exception:  # loop boundary: a broken listener must not stop the others' news
                        log.exception("a listener of server exits failed for instance %s", key)


def _raise_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))

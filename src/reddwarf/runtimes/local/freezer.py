"""Freezing one instance's filesystem for a snapshot, so that no worker's death or pause can leave it frozen.

A frozen filesystem blocks every write of the tenant's server: the worst outcome of a snapshot is a freeze
that nobody lifts. So the worker never holds the freeze itself. It starts a holder (`HOLDER`, a few lines
of Python run with `-I -S`, as root, in a session of its own: the fence that kills a lost step's process
group does not reach it) that freezes the filesystem (FIFREEZE), says so, and thaws it (FITHAW) at the first
of:

- a line from the worker on its stdin (the snapshot is taken);
- end of file on its stdin: the worker died (the kernel closes the pipe at once, so a killed worker's
  freeze ends within milliseconds);
- its deadline (`deadline` seconds after the freeze): a worker paused or stuck while holding the pipe.

The holder answers how the freeze ended: `thawed` (asked), or `late` (the deadline passed first: whatever was
copied during the freeze may not be consistent, so the caller discards it and raises). Thawing an already
thawed filesystem is harmless (EINVAL, ignored).

A freeze outlives the process that made it, so the holder must not die before it thaws: it ignores SIGTERM,
SIGINT and SIGHUP (a service manager stopping the control plane signals its whole cgroup, and a session of
its own does not leave it) and asks the OOM killer to spare it. And it freezes only the filesystem it was
meant to: it checks that the directory it opened is on the device the caller saw mounted there (a volume
unmounted meanwhile would otherwise make it freeze the filesystem beneath, often the host's root).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from reddwarf.domain.errors import TemporaryError

log = logging.getLogger(__name__)

# Seconds a freeze lasts at most when the worker does not end it (paused, stuck); a dead worker's ends at once.
FREEZE_DEADLINE = 1.0
# Seconds to wait for the holder to say the filesystem is frozen (FIFREEZE waits for in-flight writes).
FREEZE_START_TIMEOUT = 10.0

# FIFREEZE and FITHAW: _IOWR('X', 119, int) and _IOWR('X', 120, int).
HOLDER = r"""
import fcntl, os, select, signal, sys, time
for caught in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(caught, signal.SIG_IGN)
try:
    with open("/proc/self/oom_score_adj", "w") as adj:
        adj.write("-1000")
except OSError:
    pass
FIFREEZE, FITHAW = 0xC0045877, 0xC0045878
mount, deadline, device = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
if os.fstat(fd).st_dev != device:
    sys.stdout.write("error not the filesystem meant (unmounted?)\n")
    sys.stdout.flush()
    sys.exit(1)
def thaw():
    try:
        fcntl.ioctl(fd, FITHAW, 0)
    except OSError:
        pass
try:
    fcntl.ioctl(fd, FIFREEZE, 0)
except OSError as exc:
    sys.stdout.write("error %s\n" % exc.strerror)
    sys.stdout.flush()
    sys.exit(1)
try:
    ends = time.monotonic() + deadline
    sys.stdout.write("frozen\n")
    sys.stdout.flush()
    while True:
        left = ends - time.monotonic()
        if left <= 0:
            how = "late"
            break
        ready, _, _ = select.select([0], [], [], left)
        if ready:
            how = "thawed" if os.read(0, 64) else "orphaned"
            break
finally:
    thaw()
sys.stdout.write(how + "\n")
sys.stdout.flush()
"""


@contextlib.contextmanager
def frozen(mountpoint: Path, deadline: float = FREEZE_DEADLINE) -> Iterator[None]:
    """Freeze the filesystem mounted at `mountpoint` for the body of the context (module docstring).
    TemporaryError if it cannot be frozen, or if the freeze ended by its deadline before the body did."""
    device = os.stat(mountpoint).st_dev
    if device == os.stat(mountpoint.parent).st_dev:
        raise TemporaryError(f"cannot freeze {mountpoint}: no filesystem is mounted there")
    holder = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", HOLDER, str(mountpoint), repr(deadline), str(device)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
        start_new_session=True, close_fds=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    started = time.monotonic()
    try:
        first = _line(holder, FREEZE_START_TIMEOUT)
        if first != "frozen":
            raise TemporaryError(f"cannot freeze the filesystem at {mountpoint}: {first or 'the holder exited'}")
        froze = time.monotonic()
        yield
        with contextlib.suppress(BrokenPipeError):  # it ended the freeze by itself and exited: it says why
            holder.stdin.write(b"thaw\n")
        ended = _line(holder, FREEZE_START_TIMEOUT)
        if ended != "thawed":
            raise TemporaryError(
                f"the freeze of {mountpoint} ended by its {deadline:g}s deadline before the copy did; "
                "the copy is discarded"
            )
        log.info("froze %s for %.0f ms (%.0f ms to freeze)", mountpoint, (time.monotonic() - froze) * 1000,
                 (froze - started) * 1000)
    finally:
        with contextlib.suppress(OSError):
            holder.stdin.close()  # end of file: the holder thaws now, whatever happened above
        try:
            holder.wait(timeout=FREEZE_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.error("the freeze holder of %s (pid %d) did not exit", mountpoint, holder.pid)
        holder.stdout.close()


def _line(holder: subprocess.Popen[bytes], timeout: float) -> str:
    """The holder's next line ('' when it exited), waiting at most `timeout` seconds."""
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], timeout)
    if not ready:
        return ""
    return holder.stdout.readline().decode("utf-8", "replace").strip()

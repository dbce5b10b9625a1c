"""The lease a step runs under, as the code below the kernel (engines, runtimes) sees it.

A worker that loses its lease (it expired while the worker was paused or cut off from the store, or a
delete superseded the operation) must stop doing the operation's work on the host, not only stop
journaling it: another worker now runs the same step. The kernel (`workflows.kernel.context`) makes a
`Fence` current for the thread that runs a step; the code that does the work outside the store uses it:

- `run` / `Fence.adopt`: every child process a step starts (mkfs, useradd, initdb, later pg_basebackup) is
  adopted by the fence, in its own process group; when the lease is lost the kernel's lease keeper calls
  `Fence.cancel`, which kills those groups at once (the keeper notices within a third of the TTL, see
  `LeaseKeeper`), and a child started after that is killed as it is adopted.
- `Fence.tag`: the attempt, for anything a step writes outside the store (a staging directory, a backup's
  artifacts, a marker): two holders of one operation never write to the same name.
- `Fence.confirm`: the commit point of such a write (a rename into place, a marker) is preceded by a store
  round trip that renews the lease; it raises `LeaseLost` when the lease is no longer this worker's, so a
  stale writer does not commit over a newer one. The confirmation leaves the lease a whole TTL to run (a
  delete superseding the operation waits for the lease to be let go, `live_leases`, before it touches the
  host); only a pause of the worker longer than that between the confirmation and the commit, a few
  statements later, escapes it. A write that must be exact whatever happens (a backup's manifest) goes
  to a name carrying the tag and is committed by a store transaction under the lease.

Outside a step (the CLI, a test calling a runtime directly) `current()` is an unfenced no-op fence.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from reddwarf.domain.errors import LeaseLost

log = logging.getLogger(__name__)

# How long a killed child's output is read, and the child waited for, before it is given up on (a
# descendant that left its group may hold its pipes open).
_REAP_WAIT = 5.0


class Fence:
    """One holding of one operation's lease (module docstring). Thread-safe."""

    def __init__(
        self, tag: str, confirm: Callable[[], None] | None = None, *,
        expired: Callable[[], bool] | None = None, on_point: Callable[[Fence, str], None] | None = None,
    ) -> None:
        """`confirm` asks the store (raises `LeaseLost`); `expired` says, without a round trip, whether the
        lease has outlived its TTL since it was last confirmed (a worker resumed after a pause knows it
        before its keeper thread gets to run)."""
        self.tag = tag
        self._expired = expired
        # The step running under the fence (set by the kernel), for logs and the test-only crash points.
        self.step = ""
        self._confirm = confirm
        # Told of the points a step reaches (`reached`; "child" when it adopts one): the test crash points.
        self._on_point = on_point
        self._lock = threading.Lock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        """Raise `LeaseLost` if the lease is known lost or past its TTL (no store round trip)."""
        if not self._cancelled and self._expired is not None and self._expired():
            self.cancel()
        if self._cancelled:
            raise LeaseLost(f"lease of attempt {self.tag} lost")

    def confirm(self) -> None:
        """Raise `LeaseLost` unless the store confirms, now, that the lease is still held."""
        self.check()
        if self._confirm is not None:
            self._confirm()

    def adopt(self, child: subprocess.Popen[bytes]) -> None:
        """Track a child started in a session of its own (`start_new_session=True`); killed on `cancel`."""
        expired = self._expired is not None and self._expired()
        with self._lock:
            adopted = not (self._cancelled or expired)
            if adopted:
                self._children[child.pid] = child
        if adopted:
            self.reached("child")
            return
        kill_group(child.pid)
        self.cancel()
        raise LeaseLost(f"lease of attempt {self.tag} lost; child process {child.pid} killed")

    def reached(self, point: str) -> None:
        """The step has reached `point` (a moment a test may crash the worker at, e.g. "frozen": while a
        filesystem is frozen for a snapshot); nothing outside the kernel's tests."""
        if self._on_point is not None:
            self._on_point(self, point)

    def release(self, child: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children.pop(child.pid, None)

    def cancel(self) -> int:
        """The lease is lost: kill every adopted child's process group. Returns how many were running."""
        with self._lock:
            self._cancelled = True
            children = list(self._children.values())
            self._children.clear()
        running = [child for child in children if child.poll() is None]
        for child in running:
            kill_group(child.pid)
        if running:
            log.warning("attempt %s: lease lost; killed child processes %s", self.tag,
                        ", ".join(str(child.pid) for child in running))
        return len(running)


class _Unfenced(Fence):
    """Outside any step: nothing to cancel, and one stray `cancel` must not fence every later `run`."""

    def cancel(self) -> int:
        return 0


UNFENCED: Fence = _Unfenced("direct")

_current: contextvars.ContextVar[Fence] = contextvars.ContextVar("reddwarf_fence", default=UNFENCED)


def current() -> Fence:
    """The fence of the step running in this thread (or context), else the unfenced one."""
    return _current.get()


@contextlib.contextmanager
def fenced(fence: Fence) -> Iterator[Fence]:
    """Make `fence` current for the code run inside (the kernel does this around a step)."""
    token = _current.set(fence)
    try:
        yield fence
    finally:
        _current.reset(token)


def run(argv: Sequence[str], *, timeout: float, **options: Any) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(argv, capture_output=True, text=True)` under the current fence: the child gets a
    session (process group) of its own, is killed with it when the lease is lost (`LeaseLost` is raised
    then) or at `timeout` (`subprocess.TimeoutExpired`, as `subprocess.run`)."""
    child: subprocess.Popen[bytes] = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, **options,
    )
    out, err = communicate(child, timeout=timeout)
    return subprocess.CompletedProcess(
        list(argv), child.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    )


def communicate(child: subprocess.Popen[bytes], *, timeout: float) -> tuple[bytes, bytes]:
    """`child.communicate(timeout=...)` for a child started in a session of its own, under the current
    fence: adopted while it runs, its group killed when the lease is lost (`LeaseLost`), at `timeout`
    (`subprocess.TimeoutExpired`, carrying what it wrote until then) or on any other exception."""
    fence = current()
    try:
        fence.adopt(child)
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            kill_group(child.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                expired.output, expired.stderr = child.communicate(timeout=_REAP_WAIT)
            raise
    except BaseException:  # the timeout, a lost lease, an interrupt: the whole group goes
        _end(child)
        raise
    finally:
        fence.release(child)
    fence.check()  # a lost lease killed it: say so, not that the command failed
    return out or b"", err or b""


def _end(child: subprocess.Popen[bytes]) -> None:
    """Kill `child`'s group, close its pipes and reap it, never waiting long on a descendant that left the
    group (setsid) and holds a pipe open."""
    if child.returncode is None:
        kill_group(child.pid)
    for pipe in (child.stdout, child.stderr):
        if pipe is not None:
            pipe.close()
    try:
        child.wait(timeout=_REAP_WAIT)
    except subprocess.TimeoutExpired:
        log.error("child process %d survived SIGKILL of its group", child.pid)


def kill_group(pgid: int) -> None:
    """SIGKILL the process group `pgid` (gone already: nothing)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)

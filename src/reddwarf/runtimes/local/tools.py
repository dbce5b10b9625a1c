"""Backup and restore tools of one instance, run with their stdin and stdout piped to the control plane.

An instance-user tool (`ToolSpec.as_instance`) runs through `setpriv` as the instance's OS user with no new
privileges, in a work directory on the instance's volume (its temp dir: 0700, the user's); it can read and
write the instance's files and nothing else of the host. A control-plane tool runs as the control plane in a
work directory inside the instance's root-only private directory: it is only ever a client of the server's
unix socket (it reads no file a tenant could have replaced by a symlink). Files root writes into, and reads
back from, an instance-user work directory go through `files`' symlink-safe walks.

Every tool is a child of the current fence (`reddwarf.fencing`): its process group is killed when the step's
lease is lost, and whatever still runs when the context ends is killed too.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import secrets
import select
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from reddwarf import fencing
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.workload import WORK_DIR, ToolSpec
from reddwarf.runtimes.local import files, launch, processes, users, volumes
from reddwarf.runtimes.local.paths import InstanceLayout

log = logging.getLogger(__name__)

COLLECT_LIMIT = 16 << 20
# How often `output()` looks at the fence and the tool between reads, and how long a tool's output may go on
# after the tool exited.
POLL_MS = 250
EXIT_GRACE = 5.0
_STDERR_TAIL = 64 << 10
_TAIL_LINES = 20
# Seconds between two write-behind flushes of a volume an extract fills.
WRITE_BEHIND_PAUSE = 0.5


class _WriteBehind:
    """Flushes the volume an extract tool fills while it runs (syncfs every `WRITE_BEHIND_PAUSE`), so most of
    its writeback overlaps the decompression and the extract instead of waiting in the page cache for the sync
    that ends the restore's init. Measured on a 1 GB PostgreSQL 18 restore: that sync took ~2.2 s of ~5.5 s,
    spent after everything else; with this, ~1 s and a restore of ~4.5 s (every 0.2 s instead: the flushes
    themselves slowed the extract by 2 s). Best effort: a failed flush stops it; the final sync still makes
    the data durable."""

    def __init__(self, volume: Path, instance_id: str) -> None:
        self._volume = volume
        self._instance_id = instance_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flush, name="write-behind", daemon=True)
        self._thread.start()

    def _flush(self) -> None:
        while not self._stop.wait(WRITE_BEHIND_PAUSE):
            try:
                volumes.flush(self._volume)
            except OSError as exc:
                log.info("instance %s: write-behind stopped: %s", self._instance_id, exc)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _StderrTail:
    """Drains a child's stderr in a thread, keeping its last bytes for the fault."""

    def __init__(self, pipe: BinaryIO) -> None:
        self._pipe = pipe
        self._kept: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._thread = threading.Thread(target=self._drain, name="tool-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            while piece := self._pipe.read1(1 << 16):  # type: ignore[attr-defined]
                self._kept.append(piece)
                self._size += len(piece)
                while self._size > _STDERR_TAIL and len(self._kept) > 1:
                    self._size -= len(self._kept.popleft())

    def close(self, timeout: float = 5.0) -> None:
        """Once the child is gone: let the drain reach EOF, then close the pipe (else it leaks, unclosed). A
        pipe some other process still holds open (a tenant's process can take a copy of a descriptor of a tool
        of its own OS user) never reaches EOF: it is left to its daemon thread, never waited on (closing a
        reader another thread is blocked in would block too)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("a tool's stderr is still held open by another process; not waiting for it")
            return
        with contextlib.suppress(OSError):
            self._pipe.close()

    def text(self, timeout: float = 5.0) -> str:
        self._thread.join(timeout)
        lines = b"".join(self._kept).decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-_TAIL_LINES:])


class LocalToolRun:
    """A running tool (see `reddwarf.runtimes.base.ToolRun`)."""

    def __init__(
        self, child: subprocess.Popen[bytes], spec: ToolSpec, work: Path, anchor: Path, instance_id: str
    ) -> None:
        self._child = child
        self._spec = spec
        self._work = work
        self._anchor = anchor
        self._instance_id = instance_id
        assert child.stdout is not None and child.stderr is not None
        self._stderr = _StderrTail(child.stderr)  # type: ignore[arg-type]

    @property
    def stdin(self) -> BinaryIO | None:
        return self._child.stdin  # type: ignore[return-value]

    @property
    def stdout(self) -> BinaryIO:
        assert self._child.stdout is not None
        return self._child.stdout  # type: ignore[return-value]

    @property
    def name(self) -> str:
        return self._spec.description or os.path.basename(self._spec.argv[0])

    def finish(self, timeout: float) -> Mapping[str, bytes]:
        if self._child.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._child.stdin.close()
        try:
            code = self._child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            fencing.kill_group(self._child.pid)
            raise PermanentError(
                f"{self.name} of instance {self._instance_id} did not finish within {timeout:g}s",
                details=self._stderr.text(),
            ) from None
        fencing.current().check()  # the fence killed it: the lease is lost, not the tool failed
        if code != 0:
            raise PermanentError(
                f"{self.name} of instance {self._instance_id} failed ({processes.describe_exit(code)})",
                details=self._stderr.text(),
            )
        collected: dict[str, bytes] = {}
        for name in self._spec.collect:
            try:
                content = files.read_limited(self._anchor, self._work / name, COLLECT_LIMIT)
            except (ValueError, OSError) as exc:
                raise PermanentError(
                    f"{self.name} of instance {self._instance_id} left no usable {name}: {exc}"
                ) from None
            if content is None:
                raise PermanentError(f"{self.name} of instance {self._instance_id} did not write {name}")
            collected[name] = content
        return collected

    def stderr_tail(self) -> str:
        return self._stderr.text(timeout=0.5)

    def close_stderr(self) -> None:
        self._stderr.close()

    def output(self, piece: int, idle_timeout: float) -> Iterator[bytes]:
        """The tool's stdout, read from its descriptor without ever blocking for long: the fence is checked
        between reads (a lost lease ends it), `idle_timeout` seconds without a byte fail it, and so does an
        output that goes on more than `EXIT_GRACE` seconds after the tool exited (another process, which a
        tenant can make of its own OS user's tool, holds the pipe open)."""
        stdout = self._child.stdout
        assert stdout is not None
        fd = stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        fence = fencing.current()
        last = time.monotonic()
        exited: float | None = None
        while True:
            fence.check()
            if poller.poll(POLL_MS):
                data = os.read(fd, piece)
                if not data:
                    return
                last = time.monotonic()
                yield data
                continue
            now = time.monotonic()
            if exited is None and self._child.poll() is not None:
                exited = now
            if exited is not None and now - exited > EXIT_GRACE:
                raise PermanentError(
                    f"{self.name} of instance {self._instance_id} exited but its output did not end: another "
                    "process holds it open"
                )
            if now - last > idle_timeout:
                raise PermanentError(
                    f"{self.name} of instance {self._instance_id} wrote nothing for {idle_timeout:g} seconds"
                )


@contextlib.contextmanager
def open_tool(
    paths: InstanceLayout, spec: ToolSpec, setpriv: str, command_path: str, groups: tuple[int, ...] = ()
) -> Iterator[LocalToolRun]:
    """Run `spec` for the instance of `paths` (module docstring), as the instance's user with `groups` as its
    only supplementary groups (its replication set's); kill it and remove its work directory at the end of
    the context."""
    if spec.as_instance:
        user = users.require(paths.os_user)
        anchor, uid, gid = paths.volume_dir, user.uid, user.gid
        work = paths.tmp_dir / f".tool-{secrets.token_hex(6)}"
    else:
        anchor, uid, gid = paths.private_dir, 0, 0
        work = paths.private_dir / f"tool-{secrets.token_hex(6)}"
    files.make_dir(anchor, work, uid, gid)
    try:
        for file in spec.files:
            target = work / file.path
            files.write_owned(anchor, target, file.content.encode(), uid, gid, 0o600 if file.secret else file.mode)
        argv = [part.replace(WORK_DIR, str(work)) for part in spec.argv]
        tmp = str(work)
        env = {"PATH": command_path, "LANG": "C.UTF-8", "HOME": tmp, "TMPDIR": tmp, "TMP": tmp, "TEMP": tmp}
        env.update({name: value.replace(WORK_DIR, str(work)) for name, value in spec.env})
        launch.require_executable(argv[0], env["PATH"])
        if spec.as_instance:
            argv = launch.user_argv(setpriv, uid, gid, argv, groups)
        child = subprocess.Popen(
            argv, cwd=work, env=env, stdin=subprocess.PIPE if spec.stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True, umask=0o077,
        )
        fence = fencing.current()
        run = LocalToolRun(child, spec, work, anchor, paths.instance_id)
        # A tool fed by the control plane as the instance's user is an extract into its volume.
        write_behind = _WriteBehind(paths.volume_dir, paths.instance_id) if spec.as_instance and spec.stdin else None
        try:
            fence.adopt(child)
            log.info("instance %s: running %s (pid %d)", paths.instance_id, spec.description or argv[0], child.pid)
            yield run
        finally:
            if write_behind is not None:
                write_behind.stop()
            fence.release(child)
            if child.poll() is None:
                fencing.kill_group(child.pid)
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5.0)
            run.close_stderr()
    finally:
        try:
            files.remove_tree(anchor, work)
        except OSError as exc:
            log.warning("instance %s: cannot remove tool directory %s: %s", paths.instance_id, work, exc)

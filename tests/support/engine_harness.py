"""What the engine integration harnesses share: a throwaway OS user, free addresses in a test pool.

Each engine's harness (`tests/integration/engines/<engine>/*_harness.py`) runs a workload the way a runtime
would, minimally; the pieces every engine needs the same way live here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import random
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import FileSpec, Placement, WorkloadSpec
from reddwarf.engines.base import Engine


@dataclass(frozen=True)
class OsUser:
    """An unprivileged OS user created for the tests."""

    name: str
    uid: int
    gid: int


@contextmanager
def throwaway_os_user() -> Iterator[OsUser]:
    """A new unprivileged system user (and its group), removed at the end."""
    name = f"rdtest{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
         "--user-group", name],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(name)
    try:
        yield OsUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True


def free_address(pool: str, port: int, exclude: frozenset[str] = frozenset()) -> str:
    """An address of `pool` where `port` is free (random order: parallel runs rarely collide)."""
    hosts = [str(h) for h in ipaddress.ip_network(pool).hosts() if str(h) not in exclude]
    random.shuffle(hosts)
    for host in hosts:
        if bindable(host, port):
            return host
    raise RuntimeError(f"no bindable address in {pool} for port {port}")


class HarnessServer:
    """One server run the way a runtime would, minimally: 0700 directories owned by an unprivileged user,
    the workload's files written with their modes, `init` (once) and `server` run as that user in a session
    of their own, readiness polled through the engine's probe with a deadline, the stop signal sent to the
    process group. Engines' harnesses subclass it to name their logs and add their own helpers.
    """

    init_log = "server.log"
    server_log = "server.log"
    ready_deadline = 60.0
    poll_interval = 0.02
    command_path = "/usr/local/bin:/usr/bin:/bin"

    def __init__(
        self, engine: Engine, placement: Placement, workload: WorkloadSpec, admin_password: Secret, user: OsUser,
    ) -> None:
        self.engine = engine
        self.placement = placement
        self.workload = workload
        self.admin_password = admin_password
        self.user = user
        self.process: subprocess.Popen[bytes] | None = None
        self.initialised = False

    @property
    def cwd(self) -> str:
        return self.placement.data_dir

    def log_text(self) -> str:
        """Every log the server and its commands wrote, for assertion messages and log checks."""
        parts = []
        for path in sorted(Path(self.placement.log_dir).iterdir()):
            parts.append(f"== {path.name}\n" + path.read_text(errors="replace"))
        return "\n".join(parts)

    def env(self, pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
        return {"PATH": self.command_path, "LANG": "C.UTF-8", "HOME": self.placement.data_dir, **dict(pairs)}

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _write(self, spec: FileSpec) -> None:
        fd = os.open(spec.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spec.mode)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), spec.mode)
            os.fchown(handle.fileno(), self.user.uid, self.user.gid)
            handle.write(spec.content)

    def _log_fd(self, name: str) -> int:
        fd = os.open(Path(self.placement.log_dir) / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchown(fd, self.user.uid, self.user.gid)
        return fd

    def prepare(self) -> None:
        p = self.placement
        for path in (p.data_dir, p.config_dir, p.log_dir, p.run_dir, p.socket_dir):
            Path(path).mkdir(mode=0o700, parents=True)
            os.chown(path, self.user.uid, self.user.gid)
            Path(path).chmod(0o700)

    def initialise(self) -> None:
        """Write the init files and run `init`, once (as the local runtime does, guarded by a marker)."""
        if self.initialised:
            return
        for spec in self.workload.init_files:
            self._write(spec)
        try:
            for command in self.workload.init:
                log = self._log_fd(self.init_log)
                try:
                    subprocess.run(
                        command.argv, user=self.user.uid, group=self.user.gid, extra_groups=[], umask=0o077,
                        env=self.env(command.env), cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                        timeout=command.timeout, check=True, start_new_session=True,
                    )
                finally:
                    os.close(log)
        finally:
            for spec in self.workload.init_files:
                if spec.secret:
                    Path(spec.path).unlink(missing_ok=True)
        self.initialised = True

    def start(self) -> None:
        for spec in self.workload.files:
            self._write(spec)
        log = self._log_fd(self.server_log)
        try:
            self.process = subprocess.Popen(
                self.workload.server.argv, user=self.user.uid, group=self.user.gid, extra_groups=[], umask=0o077,
                env=self.env(self.workload.server.env), cwd=self.cwd, stdout=log, stderr=log,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            os.close(log)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_deadline
        while not self.engine.probe(self.placement, self.engine.admin_user, self.admin_password, timeout=2.0):
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {self.ready_deadline}s:\n{self.log_text()[-3000:]}")
            time.sleep(self.poll_interval)

    def stop(self, signum: int | None = None) -> int | None:
        """Signal the process group (the workload's stop signal by default); return the exit status."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum if signum is not None else self.workload.stop_signal)
        try:
            return process.wait(timeout=self.workload.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return process.wait(timeout=10)

    def restart(self, signum: int | None = None) -> None:
        self.stop(signum)
        self.start()
        self.wait_ready()

"""Helpers of the PostgreSQL integration harness (see conftest.py): addresses, OS user, one running server.

It does what a runtime would, minimally: 0700 directories owned by an unprivileged user under a 0755
scratch directory, the workload's files and init files written with their modes, `init` and `server` run
as that user in a session of their own, readiness polled through the engine's probe with a deadline, and
`stop_signal` sent to the process group at the end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.engine_harness import OsUser
from tests.support.engine_harness import free_address as shared_free_address

from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import FileSpec, Placement, WorkloadSpec
from reddwarf.engines.postgresql import PostgresqlEngine

ADDRESS_POOL = ipaddress.ip_network("127.0.78.0/24")
PORT = 5432
READY_DEADLINE = 60.0
FLAVOR = Flavor(id="1", name="tiny", ram_mb=256, vcpus=1)


def free_address(port: int = PORT, exclude: frozenset[str] = frozenset()) -> str:
    return shared_free_address(str(ADDRESS_POOL), port, exclude)


@dataclass
class Server:
    """One instance run by the harness: its placement, workload, admin password and process."""

    engine: PostgresqlEngine
    placement: Placement
    workload: WorkloadSpec
    admin_password: Secret
    user: OsUser
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = field(default=False)

    @property
    def log_path(self) -> Path:
        return Path(self.placement.log_dir) / "postgresql.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _write(self, spec: FileSpec) -> None:
        path = Path(spec.path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spec.mode)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), spec.mode)
            os.fchown(handle.fileno(), self.user.uid, self.user.gid)
            handle.write(spec.content)

    def _env(self, pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", **dict(pairs)}

    def _log_fd(self) -> int:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchown(fd, self.user.uid, self.user.gid)
        return fd

    def prepare(self) -> None:
        p = self.placement
        for path in (p.data_dir, p.config_dir, p.log_dir, p.run_dir, p.socket_dir):
            Path(path).mkdir(mode=0o700, parents=True)
            os.chown(path, self.user.uid, self.user.gid)
            Path(path).chmod(0o700)

    def initialise(self) -> None:
        for spec in self.workload.init_files:
            self._write(spec)
        try:
            for command in self.workload.init:
                log = self._log_fd()
                try:
                    subprocess.run(
                        command.argv,
                        user=self.user.uid,
                        group=self.user.gid,
                        extra_groups=[],
                        umask=0o077,
                        env=self._env(command.env),
                        cwd=self.placement.run_dir,
                        stdout=log,
                        stderr=log,
                        timeout=command.timeout,
                        check=True,
                    )
                finally:
                    os.close(log)
        finally:
            for spec in self.workload.init_files:
                if spec.secret:
                    Path(spec.path).unlink(missing_ok=True)

    def start(self) -> None:
        for spec in self.workload.files:
            self._write(spec)
        log = self._log_fd()
        try:
            self.process = subprocess.Popen(
                self.workload.server.argv,
                user=self.user.uid,
                group=self.user.gid,
                extra_groups=[],
                umask=0o077,
                env=self._env(self.workload.server.env),
                cwd=self.placement.run_dir,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(log)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_DEADLINE
        while not self.engine.probe(self.placement, self.engine.admin_user, self.admin_password, timeout=2.0):
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {READY_DEADLINE}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, self.workload.stop_signal)
        try:
            self.process.wait(timeout=self.workload.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)


def make_placement(root: Path, user: OsUser, address: str, name: str | None = None) -> Placement:
    base = root / (name or secrets.token_hex(3))
    return Placement(
        instance_id=base.name,
        os_user=user.name,
        address=address,
        port=PORT,
        data_dir=str(base / "data"),
        config_dir=str(base / "config"),
        log_dir=str(base / "log"),
        run_dir=str(base / "run"),
        socket_dir=str(base / "s"),
    )


@contextlib.contextmanager
def running_server(
    engine: PostgresqlEngine,
    version: DatastoreVersion,
    user: OsUser,
    root: Path,
    spec: InstanceSpec,
) -> Iterator[Server]:
    """Prepare, initialise and start one server; yield it once the admin probe answers; stop it at the end."""
    root.mkdir(mode=0o755, exist_ok=True)
    placement = make_placement(root, user, free_address())
    admin_password = Secret(secrets.token_urlsafe(24))
    workload = engine.workload(spec, version, FLAVOR, placement, admin_password)
    server = Server(engine, placement, workload, admin_password, user)
    server.prepare()
    server.initialise()
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()

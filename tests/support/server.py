"""Run a real `reddwarf server` (or `reddwarf worker`) process for e2e and chaos tests.

Each server gets its own state directory under the scratch root, its own API port, a private address
sub-pool and a test-only OS user prefix, so that parallel runs and a developer's own server never collide.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reddwarf.client import ReddwarfClient
from reddwarf.runtimes.local.endpoints import clear_tables_of
from reddwarf.runtimes.local.paths import instance_key
from tests.conftest import SCRATCH_BASE
from tests.support.zygote import Spawned, zygote

REDDWARF = str(Path(sys.executable).with_name("reddwarf"))
Process = subprocess.Popen[bytes] | Spawned
# Deadlines of the tests' waits on real servers, and how often they poll (a create settles in seconds).
ACTIVE_TIMEOUT = 120.0
DELETE_TIMEOUT = 60.0
POLL_INTERVAL = 0.2
# GiB of a plane's copy-on-write volume pool (preallocated): enough for a test's volumes, not half the disk.
POOL_GB = "8"


def new_user_prefix() -> str:
    """A prefix of OS user names that belongs to one set of processes only, so its clean-up touches
    nothing else (another test run, a developer's own instances)."""
    return f"rt{secrets.token_hex(2)}-"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ReddwarfProcesses:
    state_dir: Path
    address_pool: str
    project_id: str = field(default_factory=lambda: "p" + secrets.token_hex(8))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    user_prefix: str = field(default_factory=new_user_prefix)
    procs: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1.0/{self.project_id}"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            **os.environ,
            "REDDWARF_STATE_DIR": str(self.state_dir),
            "REDDWARF_PORT": str(self.port),
            "REDDWARF_BOOTSTRAP_PROJECT": self.project_id,
            "REDDWARF_BOOTSTRAP_TOKEN": self.token,
            "REDDWARF_LOCAL_ADDRESS_POOL": self.address_pool,
            "REDDWARF_LOCAL_USER_PREFIX": self.user_prefix,
            "REDDWARF_HEALTH_INTERVAL": "0.5",
            "REDDWARF_WARM_POOL_SIZE": "0",
            "REDDWARF_LOCAL_POOL_GB": POOL_GB,
            **self.extra_env,
            **overrides,
        }
        return env

    def start_server(self, **env: str) -> Process:
        proc = self._start("server", env)
        wait_for(self._healthy, 60, "the API to answer /healthcheck")
        return proc

    def start_worker(self, **env: str) -> Process:
        return self._start("worker", env)

    def _start(self, command: str, env: dict[str, str]) -> Process:
        """`reddwarf <command>`, forked by the test session's zygote (`tests.support.zygote`: the same entry
        point without two seconds of imports per process), or spawned when REDDWARF_TEST_NO_ZYGOTE is set."""
        log = self.state_dir / f"{command}-{len(self.procs)}.log"
        proc: Process
        if os.environ.get("REDDWARF_TEST_NO_ZYGOTE"):
            with log.open("ab") as out:
                proc = subprocess.Popen([REDDWARF, command], env=self.env(**env), stdout=out, stderr=out)
        else:
            proc = zygote().spawn([command], self.env(**env), log)
        self.procs.append(proc)
        return proc

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthcheck", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def os_user(self, instance_id: str) -> str:
        """The OS user the local runtime gives the instance (or warm-pool slot) `instance_id`."""
        return self.user_prefix + instance_key(instance_id)

    def socket_dir(self, instance_id: str) -> Path:
        """The directory of the instance's unix socket (`runtimes.local.paths`): a member reached there is that
        member, whatever the set's endpoints route its address to."""
        return self.state_dir / "s" / instance_key(instance_id)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of every server and worker log, for a failing assertion's message."""
        parts = []
        for log in sorted(self.state_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def tenant(self, project_id: str | None = None, token: str | None = None) -> ReddwarfClient:
        """The typed client (`reddwarf.client`) of the bootstrap project, or of another project and token."""
        return tenant_client(self.url, project_id or self.project_id, token or self.token)

    def client(self) -> httpx.Client:
        """A bare HTTP client under the project's prefix, for what the typed client does not cover (the
        management API, events, a route's exact status code)."""
        return httpx.Client(base_url=self.endpoint, headers={"X-Auth-Token": self.token}, timeout=30)

    def stop_workers(self) -> None:
        """Stop the `reddwarf worker` processes (the API server goes on): between two chaos cases, so that
        the next case's crashing worker is the only one to claim its operation."""
        workers = [proc for proc in self.procs if list(proc.args)[1:2] == ["worker"]]  # type: ignore[arg-type]
        self._stop(workers)
        self.procs = [proc for proc in self.procs if proc not in workers]

    def stop_all(self) -> None:
        self._stop(self.procs)
        self.procs.clear()

    def _stop(self, procs: list[Process]) -> None:
        # A zygote that ended took its children with it (tests.support.zygote): nothing is left to stop, and
        # the clean-up after this must still run.
        for proc in procs:
            with suppress(RuntimeError):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with suppress(RuntimeError):
                    proc.kill()
                    proc.wait()
            except RuntimeError:
                continue


def tenant_client(url: str, project_id: str, token: str) -> ReddwarfClient:
    """A typed client that polls as often as the tests' waits want."""
    return ReddwarfClient(url, token, project_id, poll_interval=POLL_INTERVAL)


def instance_users(prefix: str) -> list[str]:
    return [p.pw_name for p in pwd.getpwall() if p.pw_name.startswith(prefix)]


def signal_processes(pids: list[int], sig: int) -> None:
    """Send `sig` to each of `pids`; one that exited since it was listed (a backend that just ended) is no error."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def processes_of(user: str) -> list[int]:
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                continue
    return pids


def sweep_test_users(prefix: str) -> None:
    """Last-resort clean-up after a failed test: kill test instance processes, unmount, drop their users."""
    for user in instance_users(prefix):
        for pid in processes_of(user):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["userdel", user], check=False, capture_output=True)
    for group in grp.getgrall():  # replication sets' groups (`runtimes.local.peers`)
        if group.gr_name.startswith(prefix):
            subprocess.run(["groupdel", group.gr_name], check=False, capture_output=True)
    clear_endpoint_tables(prefix)


def clear_endpoint_tables(prefix: str) -> None:
    """Remove the endpoint tables (`runtimes.local.endpoints`) of installations whose user prefix is `prefix`:
    kernel state that outlives the processes, and would route a later test's connections."""
    clear_tables_of(prefix)


def unmount_under(path: Path) -> None:
    mounts = Path("/proc/mounts").read_text().splitlines()
    targets = [line.split()[1] for line in mounts if line.split()[1].startswith(str(path))]
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


@contextmanager
def reddwarf_processes(root: Path, address_pool: str, **extra_env: str) -> Iterator[ReddwarfProcesses]:
    state = root / "state"
    state.mkdir(mode=0o755)
    procs = ReddwarfProcesses(state_dir=state, address_pool=address_pool, extra_env=extra_env)
    try:
        yield procs
    finally:
        procs.stop_all()
        sweep_test_users(procs.user_prefix)
        unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_plane(name: str, address_pool: str, **extra_env: str) -> Iterator[ReddwarfProcesses]:
    """A started `reddwarf server` on a fresh scratch root `<scratch>/<name>-<random>` and its own address
    sub-pool; its processes, instance users, mounts and files are removed afterwards."""
    SCRATCH_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = SCRATCH_BASE / f"{name}-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    try:
        with reddwarf_processes(root, address_pool, **extra_env) as procs:
            procs.start_server()
            yield procs
    finally:
        shutil.rmtree(root, ignore_errors=True)

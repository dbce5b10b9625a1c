"""What the benchmarks that drive a real `reddwarf server` share (bench/backup.py, bench/branch.py): the
server on a scratch directory with a private address sub-pool and OS-user prefix, the API calls around an
instance, the tenant's data loads, and the sweep of whatever a failed run left. Imported by its siblings as
`support` (a benchmark runs as `python bench/NAME.py`, which puts bench/ first on the path)."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pymysql
import redis

from reddwarf.runtimes.local.endpoints import clear_tables_of

SCRATCH = Path("/var/tmp/reddwarf-bench")
PG_BIN = {"15": Path("/usr/lib/postgresql/15/bin"), "18": Path("/opt/reddwarf/engines/postgresql/18/bin")}
GIB = 1024**3
# A ~1 GB load takes tens of seconds here, 8 GB minutes; a deadline only catches a hang.
LOAD_TIMEOUT = 3600.0
STEP_TIMEOUT = 900.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(fn: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark condition not reached in time")


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Plane:
    """The benchmark's `reddwarf server` (state under `root`, its log in `root/server.log`) and an API client
    of its bootstrap project; `env` adds settings."""

    root: Path
    address_pool: str
    user_prefix: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    project: str = field(default_factory=lambda: "bench" + secrets.token_hex(4))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def start(self) -> httpx.Client:
        state = self.root / "state"
        state.mkdir(mode=0o755)
        env = {
            **os.environ, "REDDWARF_STATE_DIR": str(state), "REDDWARF_PORT": str(self.port),
            "REDDWARF_BOOTSTRAP_PROJECT": self.project, "REDDWARF_BOOTSTRAP_TOKEN": self.token,
            "REDDWARF_LOCAL_ADDRESS_POOL": self.address_pool, "REDDWARF_LOCAL_USER_PREFIX": self.user_prefix,
            "REDDWARF_WARM_POOL_SIZE": "0", "REDDWARF_LOCAL_POOL_GB": "32", **self.env,
        }
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([str(Path(sys.executable).with_name("reddwarf")), "server"], env=env,
                                         stdout=log, stderr=log)
        poll(self._healthy, 120)
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}/v1.0/{self.project}",
                            headers={"X-Auth-Token": self.token}, timeout=60)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"reddwarf server exited ({self.proc.returncode}); see {self.log}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthcheck", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def instance_view(client: httpx.Client, instance_id: str) -> dict[str, Any]:
    """The API's view of the instance; RuntimeError if it is in ERROR."""
    view: dict[str, Any] = client.get(f"/instances/{instance_id}").json()["instance"]
    if view["status"] == "ERROR":
        raise RuntimeError(f"instance {instance_id} failed: {view.get('fault')}")
    return view


def instance_in(client: httpx.Client, instance_id: str, status: str) -> dict[str, Any] | None:
    view = instance_view(client, instance_id)
    return view if view["status"] == status else None


def create_instance(client: httpx.Client, datastore: tuple[str, str], name: str, flavor: str, volume_gb: int,
                    extra: dict[str, Any]) -> str:
    body = {"name": name, "flavorRef": flavor, "volume": {"size": volume_gb},
            "datastore": {"type": datastore[0], "version": datastore[1]}, **extra}
    response = client.post("/instances", json={"instance": body})
    response.raise_for_status()
    return str(response.json()["instance"]["id"])


def delete_instance(client: httpx.Client, instance_id: str) -> None:
    client.delete(f"/instances/{instance_id}")
    poll(lambda: client.get(f"/instances/{instance_id}").status_code == 404, STEP_TIMEOUT, 0.1)


def tenant_body(engine: str, password: str) -> dict[str, Any]:
    """The create's users and databases: the tenant `app` (with a database `app` but for Redis)."""
    if engine == "redis":
        return {"users": [{"name": "app", "password": password}]}
    return {"users": [{"name": "app", "password": password, "databases": [{"name": "app"}]}],
            "databases": [{"name": "app"}]}


# --- the tenant's data --------------------------------------------------------------------------------------

def load_pgbench(bin_dir: Path, port: int, scale: int, host: str = "127.0.0.1", user: str = "app",
                 password: str | None = None, dbname: str = "app") -> None:
    """pgbench's tables at `scale` (70 is ~1 GB), by the version's own pgbench."""
    env = {**os.environ, **({"PGPASSWORD": password} if password is not None else {})}
    subprocess.run([str(bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), "-h", host, "-p", str(port),
                    "-U", user, dbname], env=env, check=True, capture_output=True, timeout=LOAD_TIMEOUT)


def load_innodb(conn: pymysql.Connection, rows: int) -> None:
    """An InnoDB table `accounts` of `rows` rows of ~150 bytes (7 M is ~1 GB), pgbench_accounts-like, filled
    by INSERT ... SELECT from the Sequence engine's `seq_1_to_N` in tenths; closes `conn`."""
    try:
        with conn.cursor() as cur:
            cur.execute("create table accounts (id int primary key, k int not null, filler char(120) not null)"
                        " engine=InnoDB")
            step = max(rows // 10, 1)
            for first in range(0, rows, step):
                cur.execute(f"insert into accounts select seq, seq mod 100000, concat(md5(seq), repeat(' ', 88))"
                            f" from seq_{first + 1}_to_{min(first + step, rows)}")
    finally:
        conn.close()


def load_redis(client: redis.Redis, keys: int, value_size: int) -> None:
    """`keys` keys `key:N` of `value_size` bytes of hex text, set in pipelines; closes `client`."""
    try:
        batch = 2000
        for first in range(0, keys, batch):
            count = min(batch, keys - first)
            blob = os.urandom(value_size // 2 * count).hex()
            pipe = client.pipeline(transaction=False)
            for i in range(count):
                pipe.set(f"key:{first + i}", blob[i * value_size:(i + 1) * value_size])
            pipe.execute()
    finally:
        client.close()


# --- clean-up of what a failed run left ---------------------------------------------------------------------

def _pids_of(uid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    yield int(entry.name)


def sweep(root: Path, user_prefix: str, also: tuple[str, ...] = ()) -> None:
    """Kill the processes of the OS users of `user_prefix` (and the users `also`), remove those users, and
    unmount whatever is still mounted under `root`, deepest first (a volume on the pool before the pool)."""
    users = [p for p in pwd.getpwall() if p.pw_name.startswith(user_prefix) or p.pw_name in also]
    for user in users:
        for pid in _pids_of(user.pw_uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        if subprocess.run(["umount", target], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    for user in users:
        subprocess.run(["userdel", user.pw_name], check=False, capture_output=True)
    for group in grp.getgrall():  # replication sets' groups (`<prefix>set-...`)
        if group.gr_name.startswith(user_prefix):
            subprocess.run(["groupdel", group.gr_name], check=False, capture_output=True)
    clear_tables_of(user_prefix)  # the installation's endpoint table: kernel state that outlives the server

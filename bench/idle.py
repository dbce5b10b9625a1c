"""Idle benchmark: what N idle PostgreSQL instances cost the host, and how fast a dead or hung server is seen.

Runs a real `reddwarf server` (its defaults: one embedded worker, the health observer at
`REDDWARF_HEALTH_INTERVAL`) on a scratch state directory and a private address sub-pool, creates
`--instances` PostgreSQL instances (flavor 1, 1 GB; the warm pool off), waits until every one is ACTIVE and
HEALTHY, lets the plane settle, and then, over `--window` seconds at rest, measures:

- the control plane's CPU (user + system time of the `reddwarf server` process, every thread) as a percentage
  of one core, and its resident memory at the end;
- the instances' CPU for the same window (user + system time of every process of the instances' OS users,
  including the backends a health ping makes, which their postmaster has reaped): what health checking
  costs the servers themselves;

then the detection bounds, `--kills` times each: SIGKILL of a server until the API shows status SHUTDOWN
(dead: seen by pidfd at once), SIGSTOP of another until the API shows operating_status ERROR (hung: its state
T in /proc, read every round; the server is resumed after), and a freeze of a third (cgroup v1 freezer: it
still accepts TCP, answers nothing, and its state is not T) until ERROR (silent: seen by the login-free ping,
within ping interval + ping timeout + round; thawed after). The figures are the API's view, so they include
the store write and a poll of the API (~10 ms).

Each volume reserves its 1 GB against the host's storage; N volumes may need more than the disk holds, so
the benchmark sets `REDDWARF_STORAGE_OVERCOMMIT_RATIO` (printed with the figures) to what N needs. Prints
the figures; the last line is one JSON object.

    .venv/bin/python bench/idle.py --instances 100 --window 60
    .venv/bin/python bench/idle.py --instances 20 --window 20 --kills 3      # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from reddwarf.settings import Settings
from reddwarf.workflows.reconcilers.instances import PING_TIMEOUT

SCRATCH = Path("/var/tmp/reddwarf-bench-idle")
POOL = "127.0.96.0/24"
USER_PREFIX = "rdidle-"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FREEZER = Path("/sys/fs/cgroup/freezer")


# A server that runs but answers nothing is seen within the sum of these: the interval between two pings of
# an endpoint, the ping's timeout, and the interval between rounds (the server's settings, read from the
# environment it inherits, as the server reads them).
_SETTINGS = Settings()
PING_INTERVAL_S, PING_TIMEOUT_S, ROUND_S = _SETTINGS.health_ping_interval, PING_TIMEOUT, _SETTINGS.health_interval


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a process from /proc/<pid>/stat (and of its reaped children with `children`)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = text.rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def instance_pids(uids: set[int]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                continue
    return pids


def instances_cpu(uids: set[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid, children=True) for pid in instance_pids(uids)}


def server_pid_of(address: str) -> int | None:
    """The postmaster serving `address`: a `postgres` process of an instance user whose command line pins it."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # The address as a whole argument (`-c listen_addresses=<address>`): 127.0.96.1 is also a prefix of
        # 127.0.96.10 to 127.0.96.199, whose servers must not be the ones signalled.
        wanted = address.encode()
        if argv and argv[0].endswith(b"postgres") and any(a == wanted or a.endswith(b"=" + wanted) for a in argv):
            ppid = int(stat[1])
            parent = Path(f"/proc/{ppid}/cmdline")
            try:
                if parent.read_bytes().split(b"\0")[0].endswith(b"postgres"):
                    continue  # a backend or auxiliary process, not the postmaster
            except (FileNotFoundError, ProcessLookupError):
                continue
            return int(entry.name)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured at rest")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds of rest before the window")
    parser.add_argument("--kills", type=int, default=5, help="dead and hung detections measured, each")
    parser.add_argument("--version", default="15")
    args = parser.parse_args()

    disk = shutil.disk_usage(SCRATCH.parent if SCRATCH.parent.exists() else "/")
    needed_gb = args.instances + 2
    overcommit = max(1.0, round(needed_gb * 1024**3 / disk.free * 1.2, 2))
    mounted = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(SCRATCH) in line]
    if mounted:
        raise SystemExit(f"volumes of an earlier run are still mounted under {SCRATCH}; delete its instances first")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(mode=0o755, parents=True)
    SCRATCH.chmod(0o755)
    state = SCRATCH / "state"
    port, project, token = free_port(), "pidle" + secrets.token_hex(4), secrets.token_urlsafe(24)
    env = {
        **os.environ, "REDDWARF_STATE_DIR": str(state), "REDDWARF_PORT": str(port),
        "REDDWARF_BOOTSTRAP_PROJECT": project, "REDDWARF_BOOTSTRAP_TOKEN": token,
        "REDDWARF_LOCAL_ADDRESS_POOL": POOL, "REDDWARF_LOCAL_USER_PREFIX": USER_PREFIX,
        "REDDWARF_WARM_POOL_SIZE": "0", "REDDWARF_STORAGE_OVERCOMMIT_RATIO": str(overcommit),
        "REDDWARF_MAX_INSTANCES_PER_PROJECT": str(args.instances + 10),
        "REDDWARF_MAX_VOLUMES_PER_PROJECT": str(args.instances + 10),
    }
    log = (SCRATCH / "server.log").open("ab")
    server = subprocess.Popen([str(Path(sys.executable).with_name("reddwarf")), "server"], env=env,
                              stdout=log, stderr=log, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1.0/{project}", headers={"X-Auth-Token": token},
                          timeout=60)
    ids: list[str] = []
    try:
        poll(lambda: _answers(port), 60, "the API")
        figures = run(client, server.pid, args, overcommit, ids)
    finally:
        _teardown(client, server, ids)
        log.close()
    print(json.dumps(figures))


def run(
    client: httpx.Client, server_pid: int, args: argparse.Namespace, overcommit: float, ids: list[str]
) -> dict[str, Any]:
    started = time.monotonic()
    for n in range(args.instances):
        body = {"instance": {"name": f"idle-{n}", "flavorRef": "1", "volume": {"size": 1},
                             "datastore": {"type": "postgresql", "version": args.version}}}
        response = client.post("/instances", json=body)
        if response.status_code != 200:
            raise SystemExit(f"create {n} refused: {response.status_code} {response.text}")
        ids.append(response.json()["instance"]["id"])
    views = poll(lambda: _all_healthy(client, ids), 60 + 10 * args.instances, "every instance to be HEALTHY",
                 interval=1.0)
    print(f"{args.instances} PostgreSQL {args.version} instances ACTIVE and HEALTHY in "
          f"{time.monotonic() - started:.0f} s (storage overcommit {overcommit})")
    time.sleep(args.settle)

    uids = {p.pw_uid for p in pwd.getpwall() if p.pw_name.startswith(USER_PREFIX)}
    plane_before, instances_before = cpu_seconds(server_pid), instances_cpu(uids)
    window_start = time.monotonic()
    time.sleep(args.window)
    elapsed = time.monotonic() - window_start
    plane_cpu = (cpu_seconds(server_pid) - plane_before) / elapsed * 100
    instances_after = instances_cpu(uids)
    spent = sum(after - instances_before.get(pid, 0.0) for pid, after in instances_after.items())
    instances_cpu_pct = spent / elapsed * 100
    rss = rss_mb(server_pid)
    print(f"at rest over {elapsed:.0f} s: control plane {plane_cpu:.2f} % of one core, RSS {rss:.0f} MB; "
          f"the instances {instances_cpu_pct:.2f} % of one core ({instances_cpu_pct / len(ids):.3f} % each)")

    dead, hung = [], []
    reads: list[tuple[float, float]] = []
    for n in range(min(args.kills, len(views) // 2)):
        dead.append(_detect(client, views[2 * n], signal.SIGKILL, lambda v: v["status"] == "SHUTDOWN"))
        hung.append(_detect(client, views[2 * n + 1], signal.SIGSTOP, lambda v: v["operating_status"] == "ERROR",
                            reads))
    print(f"detection of a dead server: median {statistics.median(dead):.2f} s, max {max(dead):.2f} s; "
          f"of a hung (SIGSTOP) one: median {statistics.median(hung):.2f} s, max {max(hung):.2f} s")
    first, again = [r[0] for r in reads], [r[1] for r in reads]
    print(f"live reads of a hung server (503): the first {statistics.median(first):.2f} s (the admin connection's "
          f"timeout), the next {statistics.median(again) * 1000:.0f} ms (median)")
    silent = [_detect_silent(client, views[-(n + 1)]) for n in range(min(args.kills, len(views) // 2))]
    bound = PING_INTERVAL_S + PING_TIMEOUT_S + ROUND_S
    if all(s is not None for s in silent):
        measured = [s for s in silent if s is not None]
        print(f"detection of a silent server (frozen: it accepts TCP, answers nothing, its state is not T): median "
              f"{statistics.median(measured):.2f} s, max {max(measured):.2f} s (bound: ping interval "
              f"{PING_INTERVAL_S:g} s + ping timeout {PING_TIMEOUT_S:g} s + round {ROUND_S:g} s = {bound:g} s)")
    else:
        print(f"a silent server (accepts TCP, answers nothing) is not measured here (no cgroup v1 freezer); its "
              f"bound: ping interval {PING_INTERVAL_S:g} s + ping timeout {PING_TIMEOUT_S:g} s + round "
              f"{ROUND_S:g} s = {bound:g} s")
    return {
        "instances": len(ids), "version": args.version, "window_s": round(elapsed, 1),
        "storage_overcommit_ratio": overcommit,
        "control_plane_cpu_pct": round(plane_cpu, 3), "control_plane_rss_mb": round(rss, 1),
        "instances_cpu_pct": round(instances_cpu_pct, 3),
        "detect_dead_s": {"median": round(statistics.median(dead), 3), "max": round(max(dead), 3)},
        "detect_hung_s": {"median": round(statistics.median(hung), 3), "max": round(max(hung), 3)},
        "hung_live_read_s": {"first": round(statistics.median(first), 3), "next": round(statistics.median(again), 4)},
        "detect_silent_s": None if None in silent else {
            "median": round(statistics.median([s for s in silent if s is not None]), 3),
            "max": round(max(s for s in silent if s is not None), 3),
        },
        "detect_silent_bound_s": bound,
    }


def _detect(
    client: httpx.Client, view: dict[str, Any], signum: int, seen: Callable[[dict[str, Any]], bool],
    live_reads: list[tuple[float, float]] | None = None,
) -> float:
    """Seconds from the signal until the API shows `seen`; with `live_reads`, also time two live reads (list
    users) of the then hung server: the first waits out the admin connection's timeout, the second should
    answer 503 at once."""
    address = view["addresses"][0]["address"]
    pid = server_pid_of(address)
    if pid is None:
        raise SystemExit(f"no postmaster found for {address}")
    started = time.monotonic()
    os.kill(pid, signum)
    try:
        poll(lambda: seen(client.get(f"/instances/{view['id']}").json()["instance"]), 60,
             f"instance {view['id']} to be seen after signal {signum}")
        detected = time.monotonic() - started
        if live_reads is not None:
            live_reads.append((_timed_read(client, view["id"]), _timed_read(client, view["id"])))
        return detected
    finally:
        if signum == signal.SIGSTOP:
            os.kill(pid, signal.SIGCONT)


def _detect_silent(client: httpx.Client, view: dict[str, Any]) -> float | None:
    """Seconds from freezing a server (cgroup v1 freezer: its listener still completes TCP handshakes, its
    state in /proc is not T, it answers nothing) until the API shows operating_status ERROR; None without a
    v1 freezer. The server is thawed and back in its place after."""
    if not FREEZER.is_dir():
        return None
    address = view["addresses"][0]["address"]
    pid = server_pid_of(address)
    if pid is None:
        raise SystemExit(f"no postmaster found for {address}")
    group = FREEZER / f"reddwarf-bench-idle-{os.getpid()}"
    group.mkdir(exist_ok=True)
    try:
        (group / "cgroup.procs").write_text(str(pid))
        started = time.monotonic()
        (group / "freezer.state").write_text("FROZEN")
        try:
            poll(lambda: client.get(f"/instances/{view['id']}").json()["instance"]["operating_status"] == "ERROR",
                 60, f"instance {view['id']} to be seen silent")
            detected = time.monotonic() - started
        finally:
            (group / "freezer.state").write_text("THAWED")
            (FREEZER / "cgroup.procs").write_text(str(pid))
        poll(lambda: client.get(f"/instances/{view['id']}").json()["instance"]["operating_status"] == "HEALTHY",
             60, f"instance {view['id']} to answer again once thawed")
        return detected
    finally:
        group.rmdir()


def _timed_read(client: httpx.Client, instance_id: str) -> float:
    started = time.monotonic()
    response = client.get(f"/instances/{instance_id}/users")
    if response.status_code != 503:
        raise SystemExit(f"a live read of a hung server answered {response.status_code}, not 503")
    return time.monotonic() - started


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _all_healthy(client: httpx.Client, ids: list[str]) -> list[dict[str, Any]] | None:
    views = [client.get(f"/instances/{i}").json()["instance"] for i in ids]
    failed = [v for v in views if v["status"] == "ERROR"]
    if failed:
        raise SystemExit(f"instance {failed[0]['id']} failed: {failed[0].get('fault')}")
    if all(v["status"] == "ACTIVE" and v["operating_status"] == "HEALTHY" for v in views):
        return views
    return None


def _teardown(client: httpx.Client, server: subprocess.Popen[bytes], ids: list[str]) -> None:
    """Delete every instance through the API (their servers, users, volumes), then stop the server."""
    try:
        for instance_id in ids:
            client.delete(f"/instances/{instance_id}")
        # One worker deletes them one after the other (stop, unmount, remove the OS user): seconds each.
        poll(lambda: all(client.get(f"/instances/{i}").status_code == 404 for i in ids), 60 + 10 * len(ids),
             "every instance to be deleted", interval=2.0)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        client.close()


if __name__ == "__main__":
    main()

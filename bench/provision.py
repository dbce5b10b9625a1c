"""Provisioning benchmark: create -> ACTIVE (a tenant user connects) versus raw initdb + server start.

Runs a real `reddwarf server` on a scratch state directory and a private address sub-pool, creates
`--runs` PostgreSQL instances one after another, and times each from the POST until the tenant user's
first successful query. In the same run it times the raw tools on this machine: `initdb` plus starting
`postgres` until a first successful connection, as an unprivileged user. Prints median and p95 for both
and the ratio; the last line is one JSON object with the figures.

    .venv/bin/python bench/provision.py --runs 7
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
from pathlib import Path
from typing import Any

import httpx
import psycopg

SCRATCH = Path("/var/tmp/reddwarf-bench")
RAW_USER = "rdbench-raw"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(fn: Any, timeout: float, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark condition not reached in time")


def bench_reddwarf(runs: int, version: str, root: Path) -> list[float]:
    state = root / "state"
    state.mkdir(mode=0o755)
    port, project, token = free_port(), "bench" + secrets.token_hex(4), secrets.token_urlsafe(24)
    env = {
        **os.environ, "REDDWARF_STATE_DIR": str(state), "REDDWARF_PORT": str(port),
        "REDDWARF_BOOTSTRAP_PROJECT": project, "REDDWARF_BOOTSTRAP_TOKEN": token,
        "REDDWARF_LOCAL_ADDRESS_POOL": "127.0.95.0/24", "REDDWARF_LOCAL_USER_PREFIX": "rdb-",
    }
    with (root / "server.log").open("wb") as log:
        server = subprocess.Popen([str(Path(sys.executable).with_name("reddwarf")), "server"], env=env,
                                  stdout=log, stderr=log)
    timings: list[float] = []
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1.0/{project}",
                              headers={"X-Auth-Token": token}, timeout=30)
        poll(lambda: _healthy(port), 60, 0.05)
        for n in range(runs):
            password = secrets.token_urlsafe(12)
            body = {"instance": {
                "name": f"bench-{n}", "flavorRef": "1", "volume": {"size": 1},
                "datastore": {"type": "postgresql", "version": version},
                "databases": [{"name": "app"}],
                "users": [{"name": "app", "password": password, "databases": [{"name": "app"}]}],
            }}
            started = time.monotonic()
            response = client.post("/instances", json=body)
            response.raise_for_status()
            instance_id = response.json()["instance"]["id"]
            view = poll(lambda i=instance_id: _active(client, i), 300)
            poll(lambda v=view, p=password: _connects(v, p), 60, 0.002)
            timings.append(time.monotonic() - started)
            client.delete(f"/instances/{instance_id}")
            poll(lambda i=instance_id: client.get(f"/instances/{i}").status_code == 404, 120, 0.05)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    return timings


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _active(client: httpx.Client, instance_id: str) -> dict[str, Any] | None:
    view: dict[str, Any] = client.get(f"/instances/{instance_id}").json()["instance"]
    if view["status"] == "ERROR":
        raise RuntimeError(f"instance failed: {view.get('fault')}")
    return view if view["status"] == "ACTIVE" else None


def _connects(view: dict[str, Any], password: str) -> bool:
    try:
        with psycopg.connect(host=view["addresses"][0]["address"], port=view["port"], user="app",
                             password=password, dbname="app", connect_timeout=2) as conn:
            conn.execute("select 1")
        return True
    except psycopg.OperationalError:
        return False


def bench_raw(runs: int, bin_dir: Path, root: Path) -> list[float]:
    """initdb + postgres start + first successful connection, as an unprivileged user."""
    if subprocess.run(["id", RAW_USER], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RAW_USER],
                       check=True)
    entry = pwd.getpwnam(RAW_USER)
    timings = []
    for n in range(runs):
        data = root / f"raw-{n}"
        data.mkdir(mode=0o700)
        os.chown(data, entry.pw_uid, entry.pw_gid)
        port = free_port()
        started = time.monotonic()
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data / "pg"), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--data-checksums"],
                       user=entry.pw_uid, group=entry.pw_gid, check=True, capture_output=True)
        server = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(data / "pg"), "-p", str(port),
                                   "-k", str(data), "-c", "listen_addresses=127.0.0.1"],
                                  user=entry.pw_uid, group=entry.pw_gid, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            poll(lambda p=port: _raw_connects(p), 60, 0.002)
            timings.append(time.monotonic() - started)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    return timings


def _raw_connects(port: int) -> bool:
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             connect_timeout=2) as conn:
            conn.execute("select 1")
        return True
    except psycopg.OperationalError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--version", default="15")
    parser.add_argument("--bin-dir", default="/usr/lib/postgresql/15/bin")
    args = parser.parse_args()
    SCRATCH.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = SCRATCH / secrets.token_hex(4)
    root.mkdir(mode=0o755)
    try:
        raw = bench_raw(args.runs, Path(args.bin_dir), root)
        ours = bench_reddwarf(args.runs, args.version, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures = {
        "benchmark": "provision", "engine": "postgresql", "version": args.version, "runs": args.runs,
        "median_s": round(statistics.median(ours), 3), "p95_s": round(percentile(ours, 95), 3),
        "raw_median_s": round(statistics.median(raw), 3), "raw_p95_s": round(percentile(raw, 95), 3),
    }
    figures["ratio"] = round(figures["median_s"] / figures["raw_median_s"], 2)
    print(f"reddwarf create -> tenant connects: median {figures['median_s']}s  p95 {figures['p95_s']}s")
    print(f"raw initdb + start -> connects:    median {figures['raw_median_s']}s  p95 {figures['raw_p95_s']}s")
    print(f"ratio (median): {figures['ratio']}  (target <= 1.2)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

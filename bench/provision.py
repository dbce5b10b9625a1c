"""Provisioning benchmark: create -> ACTIVE (a tenant user connects) versus the raw engine bootstrap.

Runs a real `reddwarf server` on a scratch state directory and a private address sub-pool, and for each
engine version creates `--runs` instances one after another, timing each from the POST until the tenant
user's first successful query with the engine's own client library. Two configurations, each its own server:

- warm: the default warm pool (`REDDWARF_WARM_POOL_SIZE=1`, flavor 1, 1 GB): before each create the benchmark
  waits until the admin API shows a ready slot of that engine version, as in a steady state, and the create
  (flavor 1, 1 GB) claims it;
- cold: the pool off (`REDDWARF_WARM_POOL_SIZE=0`): every create makes its OS user, volume and data directory.

Redis, which starts in ~25 ms, gets three times `--runs` (`FAST_ENGINES`), raw and Reddwarf alike: a few
milliseconds of machine noise would otherwise move its ratio by a tenth.

It also times the raw tools on this machine as an unprivileged user, one run right before each create of
the first configuration (paired: a drift of the machine's speed during the benchmark moves both sides
alike): PostgreSQL `initdb` + `postgres` until a first connection, MariaDB `mariadb-install-db` + `mariadbd`
until a first connection, `redis-server` until PING answers. Prints median and p95 for each and the ratios
per engine (and the median time to status ACTIVE, which comes a step after the tenant can log in); the
last line is one JSON object with the figures.

    .venv/bin/python bench/provision.py --runs 7
    .venv/bin/python bench/provision.py --runs 5 --engine postgresql:15 --mode warm
"""

from __future__ import annotations

import argparse
import functools
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
import psycopg
import pymysql
import redis

SCRATCH = Path("/var/tmp/reddwarf-bench")
RAW_USER = "rdbench-raw"
ENGINES = ("postgresql:15", "postgresql:18", "mariadb:10.11", "redis:7.0")
# Engines that start in tens of milliseconds: each run costs little and a few milliseconds of machine noise
# move their ratio a lot, so their raw and Reddwarf medians are taken over this many times `--runs`.
FAST_ENGINES = {"redis": 3}


def runs_for(engine: str, runs: int) -> int:
    return runs * FAST_ENGINES.get(engine, 1)
PG_BIN = {"15": Path("/usr/lib/postgresql/15/bin"), "18": Path("/opt/reddwarf/engines/postgresql/18/bin")}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(fn: Callable[[], Any], timeout: float, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark condition not reached in time")


# --- tenant connections -----------------------------------------------------------------------------

def tenant_connects(engine: str, host: str, port: int, password: str) -> bool:
    try:
        if engine == "postgresql":
            with psycopg.connect(host=host, port=port, user="app", password=password, dbname="app",
                                 connect_timeout=2) as conn:
                conn.execute("select 1")
        elif engine == "mariadb":
            conn = pymysql.connect(host=host, port=port, user="app", password=password, database="app",
                                   connect_timeout=2)
            conn.close()
        else:
            client = redis.Redis(host=host, port=port, username="app", password=password, socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()
        return True
    except (psycopg.OperationalError, pymysql.err.OperationalError, redis.exceptions.RedisError):
        return False


# --- Reddwarf ---------------------------------------------------------------------------------------

RawRun = Callable[[str, str, int], None]


def bench_reddwarf(
    runs: int, engines: list[tuple[str, str]], root: Path, warm: bool, raw_run: RawRun | None = None
) -> dict[str, list[tuple[float, float]]]:
    """Reddwarf's timings per engine; with `raw_run`, one raw bootstrap is timed right before each create
    (paired runs: a drift of the machine's speed during the benchmark moves both sides alike)."""
    mode = "warm" if warm else "cold"
    state = root / f"state-{mode}"
    state.mkdir(mode=0o755)
    port, project, token = free_port(), "bench" + secrets.token_hex(4), secrets.token_urlsafe(24)
    env = {
        **os.environ, "REDDWARF_STATE_DIR": str(state), "REDDWARF_PORT": str(port),
        "REDDWARF_BOOTSTRAP_PROJECT": project, "REDDWARF_BOOTSTRAP_TOKEN": token,
        "REDDWARF_LOCAL_ADDRESS_POOL": "127.0.95.0/24", "REDDWARF_LOCAL_USER_PREFIX": "rdb-",
        "REDDWARF_WARM_POOL_SIZE": "1" if warm else "0", "REDDWARF_WARM_POOL_FLAVOR": "1",
        "REDDWARF_WARM_POOL_VOLUME_GB": "1",
    }
    with (root / f"server-{mode}.log").open("wb") as log:
        server = subprocess.Popen([str(Path(sys.executable).with_name("reddwarf")), "server"], env=env,
                                  stdout=log, stderr=log)
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1.0/{project}",
                              headers={"X-Auth-Token": token}, timeout=30)
        poll(lambda: _healthy(port), 60, 0.05)
        for engine, version in engines:
            timings = []
            for n in range(runs_for(engine, runs)):
                if warm:
                    poll(functools.partial(_pool_settled, client, engine, version), 300, 0.05)
                if raw_run is not None:
                    raw_run(engine, version, n)
                timings.append(_one_create(client, engine, version, n))
            results[f"{engine}-{version}"] = timings
        if warm:  # leave nothing behind: no pool, no slots
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            env["REDDWARF_WARM_POOL_SIZE"] = "0"
            with (root / f"server-{mode}.log").open("ab") as log:
                server = subprocess.Popen([str(Path(sys.executable).with_name("reddwarf")), "server"], env=env,
                                          stdout=log, stderr=log)
            poll(lambda: _healthy(port), 60, 0.05)
            poll(lambda: not client.get("/mgmt/pool").json()["pool"]["slots"], 300, 0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    return results


def _one_create(client: httpx.Client, engine: str, version: str, n: int) -> tuple[float, float]:
    """Seconds from the POST to the tenant's first successful query, and to status ACTIVE.

    The tenant does what the raw benchmark's client does: once it knows the address (in the create's answer
    when a warm-pool server was taken, else from polling the instance), it tries to connect every 2 ms until
    its user gets in. Status is polled every 20 ms only after that, so that the benchmark's own API traffic
    does not compete with the worker for the server process."""
    password = secrets.token_urlsafe(12)
    user: dict[str, Any] = {"name": "app", "password": password}
    body: dict[str, Any] = {"name": f"bench-{engine}-{n}", "flavorRef": "1", "volume": {"size": 1},
                            "datastore": {"type": engine, "version": version}, "users": [user]}
    if engine != "redis":
        body["databases"] = [{"name": "app"}]
        user["databases"] = [{"name": "app"}]
    started = time.monotonic()
    response = client.post("/instances", json={"instance": body})
    response.raise_for_status()
    view = response.json()["instance"]
    instance_id = view["id"]
    if not view.get("addresses"):
        view = poll(lambda: _addressed(client, instance_id), 300, 0.02)
    host, port = view["addresses"][0]["address"], view["port"]
    poll(lambda: tenant_connects(engine, host, port, password), 300, 0.002)
    first_query = time.monotonic() - started
    poll(lambda: _active(client, instance_id), 300, 0.02)
    active = time.monotonic() - started
    client.delete(f"/instances/{instance_id}")
    poll(lambda: client.get(f"/instances/{instance_id}").status_code == 404, 120, 0.05)
    return first_query, active


def _addressed(client: httpx.Client, instance_id: str) -> dict[str, Any] | None:
    view: dict[str, Any] = client.get(f"/instances/{instance_id}").json()["instance"]
    if view["status"] == "ERROR":
        raise RuntimeError(f"instance failed: {view.get('fault')}")
    return view if view.get("addresses") else None


def _pool_settled(client: httpx.Client, engine: str, version: str) -> bool:
    """A ready slot of `engine` `version` and no build or destroy under way (a steady state: a build of
    another version would share the machine, and the worker, with the create being timed)."""
    slots = client.get("/mgmt/pool").json()["pool"]["slots"]
    failed = [s for s in slots if s["state"] == "failed"]
    if failed:
        raise RuntimeError(f"a warm-pool slot failed to build: {failed[0]['error']}")
    if any(s["state"] != "ready" for s in slots):
        return False
    return any((s["datastore"], s["version"]) == (engine, version) for s in slots)


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


# --- raw tools --------------------------------------------------------------------------------------

def raw_user() -> pwd.struct_passwd:
    if subprocess.run(["id", RAW_USER], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RAW_USER],
                       check=True)
    return pwd.getpwnam(RAW_USER)


def raw_once(engine: str, version: str, n: int, root: Path) -> float:
    """Seconds from the raw tools' start (initdb / install-db / redis-server, as an unprivileged user) to a
    first connection."""
    entry = raw_user()
    work = root / f"raw-{engine}-{version}-{n}"
    work.mkdir(mode=0o700)
    os.chown(work, entry.pw_uid, entry.pw_gid)
    port = free_port()
    started = time.monotonic()
    server = _raw_start(engine, version, work, port, entry)
    try:
        poll(functools.partial(_raw_connects, engine, port), 60, 0.002)
        return time.monotonic() - started
    finally:
        server.send_signal(signal.SIGTERM if engine != "postgresql" else signal.SIGINT)
        server.wait(timeout=60)


def _as(entry: pwd.struct_passwd) -> dict[str, Any]:
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _raw_start(engine: str, version: str, work: Path, port: int, entry: pwd.struct_passwd) -> subprocess.Popen[bytes]:
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if engine == "postgresql":
        bin_dir = PG_BIN[version]
        subprocess.run([str(bin_dir / "initdb"), "-D", str(work / "pg"), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--data-checksums"], check=True, capture_output=True,
                       **_as(entry))
        return subprocess.Popen([str(bin_dir / "postgres"), "-D", str(work / "pg"), "-p", str(port), "-k", str(work),
                                 "-c", "listen_addresses=127.0.0.1"], start_new_session=True, **quiet, **_as(entry))
    if engine == "mariadb":
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={work / 'db'}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"], check=True,
                       capture_output=True, **_as(entry))
        return subprocess.Popen(["mariadbd", "--no-defaults", f"--datadir={work / 'db'}", f"--port={port}",
                                 "--bind-address=127.0.0.1", f"--socket={work / 'my.sock'}",
                                 f"--pid-file={work / 'my.pid'}"], start_new_session=True, **quiet, **_as(entry))
    return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work),
                             "--save", "", "--appendonly", "no"], start_new_session=True, **quiet, **_as(entry))


def _raw_connects(engine: str, port: int) -> bool:
    try:
        if engine == "postgresql":
            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                 connect_timeout=2) as conn:
                conn.execute("select 1")
        elif engine == "mariadb":
            pymysql.connect(host="127.0.0.1", port=port, user="root", password="", connect_timeout=2).close()
        else:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()
        return True
    except (psycopg.OperationalError, pymysql.err.OperationalError, redis.exceptions.RedisError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--engine", action="append", help="ENGINE:VERSION (repeatable); default: all")
    parser.add_argument("--mode", choices=("warm", "cold", "both"), default="both")
    args = parser.parse_args()
    engines = [(e.split(":", 1)[0], e.split(":", 1)[1]) for e in (args.engine or ENGINES)]
    modes = ("warm", "cold") if args.mode == "both" else (args.mode,)
    SCRATCH.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = SCRATCH / secrets.token_hex(4)
    root.mkdir(mode=0o755)
    raw: dict[str, list[float]] = {f"{e}-{v}": [] for e, v in engines}

    def raw_run(engine: str, version: str, n: int) -> None:
        raw[f"{engine}-{version}"].append(raw_once(engine, version, n, root))

    try:
        # Raw runs are paired with the first mode's creates, one before each.
        ours = {mode: bench_reddwarf(args.runs, engines, root, mode == "warm", raw_run if i == 0 else None)
                for i, mode in enumerate(modes)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        # The raw runs' user owns nothing once the scratch directory is gone: leave no account behind.
        subprocess.run(["userdel", RAW_USER], capture_output=True, check=False)
    figures: dict[str, Any] = {"benchmark": "provision", "runs": args.runs, "engines": {}}
    for key, raw_timings in raw.items():
        row: dict[str, float] = {
            "runs": len(raw_timings),
            "raw_median_s": round(statistics.median(raw_timings), 3),
            "raw_p95_s": round(percentile(raw_timings, 95), 3),
        }
        line = [f"{key:14s} {len(raw_timings)} runs, raw {row['raw_median_s']:.3f}s (p95 {row['raw_p95_s']:.3f})"]
        for mode in modes:
            first = [f for f, _ in ours[mode][key]]
            active = [a for _, a in ours[mode][key]]
            row[f"{mode}_median_s"] = round(statistics.median(first), 3)
            row[f"{mode}_p95_s"] = round(percentile(first, 95), 3)
            row[f"{mode}_ratio"] = round(row[f"{mode}_median_s"] / row["raw_median_s"], 2)
            row[f"{mode}_active_median_s"] = round(statistics.median(active), 3)
            line.append(f"{mode} {row[f'{mode}_median_s']:.3f}s (p95 {row[f'{mode}_p95_s']:.3f}) "
                        f"ratio {row[f'{mode}_ratio']:.2f}, ACTIVE {row[f'{mode}_active_median_s']:.3f}s")
        figures["engines"][key] = row
        print(" | ".join(line))
    print("target: ratio <= 1.2 (create -> the tenant's first query, over raw bootstrap -> first query); "
          "warm = the default pool, cold = pool off; ACTIVE = create -> status ACTIVE")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

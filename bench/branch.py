"""Branch benchmark: branch create -> the tenant's first query on the branch, idle and under a write load, at
several sizes of data, and the source's longest write stall while it is snapshotted (issue 14).

Runs a real `reddwarf server` with its volumes on the copy-on-write pool (`REDDWARF_LOCAL_USE_COW_POOL=true`,
a preallocated XFS image of `--pool-gb` under the state directory) on a scratch directory under /var/tmp, a
private address sub-pool and OS-user prefix, the warm pool off. For each engine version and size it:

1. creates a source instance (flavor 4; a volume of 1.5 x the data + 3 GB, at least 5 GB) with a tenant user
   and database, and loads the data as the tenant over TCP: PostgreSQL, the version's `pgbench -i -s 70` per
   GB; MariaDB, an InnoDB table of 7 M rows of ~150 bytes per GB; Redis, 1 M keys of 1000 bytes per GB
   (`--redis-sizes`: Redis loads its whole dataset at start, so there the snapshot must be flat in size and
   the load time is reported beside it);
2. one warm-up branch right after the load (reported as `after_load`: PostgreSQL's first checkpoint after
   the load writes all of it out, a MariaDB copy recovers what InnoDB has not flushed yet), a wait until
   the source is at rest (MariaDB: InnoDB's dirty pages down to 1 % of its buffer pool, as the tenant sees
   in SHOW GLOBAL STATUS; the time is printed), `--runs` idle branches, then `--runs` under a write load,
   each: POST /instances with `restorePoint: {"instanceRef": SOURCE}` (same flavor and volume), the API
   polled until it shows the branch's address, then the tenant's query (one row of the loaded table; Redis:
   GET of a loaded key) retried every 5 ms until it answers: the time from before the POST is the figure
   (ACTIVE, about then, is reported beside it); the branch is then deleted (untimed);
3. the write load: a process of its own committing tiny transactions to the source as the tenant in a tight
   loop on `LOAD_THREADS` connections (UPDATE of a pgbench_accounts / accounts row; Redis: SET), one of which,
   the probe (INSERT into a table of its own; Redis: INCR), records each commit's time. A run's source write
   stall is the largest gap between consecutive probe commits that overlaps its window (POST to first query).

Each run also gets, from the server's log, "snapshot ... taken in N ms" (syncfs, freeze, reflink, thaw) and
"froze ... for N ms (M ms to freeze)", and for Redis its load time from the branch's own log.

Prints a line per run, then per engine, size and mode the p50 and p95 of the first query, the stall and the
targets: PostgreSQL and MariaDB p95 < 1 s idle, < 2 s under load, the same at 8 GB as at 1 GB; stall < 200 ms;
Redis's snapshot flat in size ("the same", "flat": the largest size's p50 <= 1.25 x the smallest's + 50 ms).
The last line is one JSON object with every figure (each run's too).

Run as root (OS users, loop devices) from a checkout with its venv (`python3 -m venv .venv && .venv/bin/pip
install -e '.[dev]'`), the engines and xfsprogs installed, and room under /var/tmp for the pool image:

    .venv/bin/python bench/branch.py                       # postgresql:18, mariadb:10.11, redis:7.0; 1 and 8 GB
    .venv/bin/python bench/branch.py --runs 3 --engine postgresql:18 --sizes 1

Nothing is left behind: instances are deleted through the API, the server is stopped, and whatever a failed
run left (processes and OS users of the bench's prefix, mounts under the scratch directory: the volumes, then
the pool) is removed with the scratch directory.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import multiprocessing
import random
import re
import secrets
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pymysql
import redis

from support import (
    GIB,
    PG_BIN,
    SCRATCH,
    Plane,
    create_instance,
    delete_instance,
    instance_in,
    instance_view,
    load_innodb,
    load_pgbench,
    load_redis,
    poll,
    sweep,
    tenant_body,
)

USER_PREFIX = "rdbr-"
ADDRESS_POOL = "127.0.98.0/24"
ENGINES = ("postgresql:18", "mariadb:10.11", "redis:7.0")
FLAVOR = "4"
PGBENCH_SCALE_PER_GB = 70
INNODB_ROWS_PER_GB = 7_000_000
REDIS_KEYS_PER_GB = 1_000_000
REDIS_VALUE = 1000
LOAD_THREADS = 3  # the probe and two writers
TARGET_IDLE_P95_S, TARGET_LOAD_P95_S, TARGET_STALL_MS = 1.0, 2.0, 200.0
FLAT_RATIO, FLAT_SLACK = 1.25, 0.05
BRANCH_TIMEOUT = 300.0
SETTLE_TIMEOUT = 900.0
CONNECT_TIMEOUT = 2


# --- engines: the tenant's data, first query and tiny writes ----------------------------------------------

class Datastore:
    """One engine version as the tenant `app` sees it: `load` its data, `first_query` (True once answered),
    and a `writer` whose every call commits one tiny write (the probe's to a table of its own)."""

    name = ""

    def __init__(self, version: str) -> None:
        self.version = version
        self.key = f"{self.name}-{version}"
        self.datastore = (self.name, version)

    def at_rest(self, host: str, port: int, password: str) -> bool:
        """Whether the source has written out what its load left in memory (so "idle" means at rest)."""
        return True


class Postgresql(Datastore):
    name = "postgresql"

    def _connect(self, host: str, port: int, password: str, timeout: int) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(host=host, port=port, user="app", password=password, dbname="app",
                               connect_timeout=timeout, autocommit=True)

    def load(self, host: str, port: int, password: str, gb: float) -> None:
        load_pgbench(PG_BIN[self.version], port, max(1, round(gb * PGBENCH_SCALE_PER_GB)), host=host, password=password)
        with self._connect(host, port, password, 10) as conn:
            conn.execute("create table bench_probe (id bigserial primary key)")

    def first_query(self, host: str, port: int, password: str) -> bool:
        try:
            with self._connect(host, port, password, CONNECT_TIMEOUT) as conn:
                return conn.execute("select abalance from pgbench_accounts where aid = 1").fetchone() is not None
        except psycopg.OperationalError:
            return False

    def writer(self, host: str, port: int, password: str, probe: bool) -> Callable[[], object]:
        conn = self._connect(host, port, password, 10)
        if probe:
            return lambda: conn.execute("insert into bench_probe default values")
        return lambda: conn.execute("update pgbench_accounts set abalance = abalance + 1 where aid = %s",
                                    (random.randint(1, 100_000),))


class Mariadb(Datastore):
    name = "mariadb"

    def _connect(self, host: str, port: int, password: str, timeout: int) -> Any:
        return pymysql.connect(host=host, port=port, user="app", password=password, database="app",
                               autocommit=True, connect_timeout=timeout, read_timeout=3600)

    def load(self, host: str, port: int, password: str, gb: float) -> None:
        load_innodb(self._connect(host, port, password, 10), max(1, round(gb * INNODB_ROWS_PER_GB)))
        conn = self._connect(host, port, password, 10)
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute("create table bench_probe (id bigint auto_increment primary key) engine=InnoDB")

    def first_query(self, host: str, port: int, password: str) -> bool:
        try:
            conn = self._connect(host, port, password, CONNECT_TIMEOUT)
            with contextlib.closing(conn), conn.cursor() as cur:
                return bool(cur.execute("select k from accounts where id = 1"))
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
            return False

    def at_rest(self, host: str, port: int, password: str) -> bool:
        """InnoDB's dirty pages down to its flushing's low-water mark (1 % of the buffer pool): a copy then
        has little to recover. Right after the load it has most of it (the warm-up run's figure)."""
        conn = self._connect(host, port, password, 10)
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute("show global status where variable_name in "
                        "('Innodb_buffer_pool_pages_dirty', 'Innodb_buffer_pool_pages_total')")
            status = {str(name).lower(): int(value) for name, value in cur.fetchall()}
        return status["innodb_buffer_pool_pages_dirty"] <= status["innodb_buffer_pool_pages_total"] // 100

    def writer(self, host: str, port: int, password: str, probe: bool) -> Callable[[], object]:
        cur = self._connect(host, port, password, 10).cursor()
        if probe:
            return lambda: cur.execute("insert into bench_probe () values ()")
        return lambda: cur.execute("update accounts set k = k + 1 where id = %s", (random.randint(1, 100_000),))


class Redis(Datastore):
    name = "redis"

    def _client(self, host: str, port: int, password: str, timeout: float) -> redis.Redis:
        return redis.Redis(host=host, port=port, username="app", password=password, socket_connect_timeout=timeout,
                           socket_timeout=timeout)

    def load(self, host: str, port: int, password: str, gb: float) -> None:
        load_redis(self._client(host, port, password, 60), max(1, round(gb * REDIS_KEYS_PER_GB)), REDIS_VALUE)

    def first_query(self, host: str, port: int, password: str) -> bool:
        client = self._client(host, port, password, CONNECT_TIMEOUT)
        try:
            return client.get("key:0") is not None
        except redis.exceptions.ConnectionError:  # refused, or BusyLoadingError while the keyspace loads
            return False
        finally:
            client.close()

    def writer(self, host: str, port: int, password: str, probe: bool) -> Callable[[], object]:
        client = self._client(host, port, password, 60)
        if probe:
            return lambda: client.incr("bench:probe")
        return lambda: client.set(f"bench:load:{random.randint(0, 9999)}", "x" * 100)


Engine = Postgresql | Mariadb | Redis


def engine_for(spec: str) -> Engine:
    name, _, version = spec.partition(":")
    kinds: dict[str, type[Engine]] = {"postgresql": Postgresql, "mariadb": Mariadb, "redis": Redis}
    if name not in kinds or not version:
        raise SystemExit(f"unknown engine {spec!r}: one of {', '.join(ENGINES)}")
    return kinds[name](version)


def volume_gb(gb: float) -> int:
    return max(5, math.ceil(gb * 1.5) + 3)


# --- the write load: a process of its own, so that its threads never hold the benchmark's GIL --------------

def _write_load(spec: str, host: str, port: int, password: str, pipe: Connection) -> None:
    """The load process: `LOAD_THREADS` writers; on each "report" from the parent it sends the probe's
    commit times since the last report, the writes so far and the first error; on "stop" it stops."""
    engine, stopping = engine_for(spec), threading.Event()
    times: list[float] = []
    writes, errors = [0] * LOAD_THREADS, list[str]()

    def run(n: int) -> None:
        try:
            write = engine.writer(host, port, password, probe=n == 0)
            while not stopping.is_set():
                write()
                if n == 0:
                    times.append(time.monotonic())
                writes[n] += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    sent = 0
    while True:
        message = pipe.recv()
        if message == "stop":
            stopping.set()
            for thread in threads:
                thread.join(30)
        upto = len(times)
        pipe.send((times[sent:upto], sum(writes), errors[:1]))
        sent = upto
        if message == "stop":
            return


@dataclass
class WriteLoad:
    """The parent's end of the load process; `commits` holds the probe's commit times received so far."""

    pipe: Connection
    commits: list[float] = field(default_factory=list)
    writes: int = 0
    started: float = field(default_factory=time.monotonic)

    def report(self, message: str = "report") -> None:
        self.pipe.send(message)
        if not self.pipe.poll(60):
            raise RuntimeError("the write load did not answer")
        times, self.writes, errors = self.pipe.recv()
        if errors:
            raise RuntimeError(f"the write load failed: {errors[0]}")
        self.commits.extend(times)

    def stall(self, begin: float, end: float) -> tuple[float, float]:
        """The largest gap (s) between consecutive probe commits overlapping [begin, end], and when it began
        (s after `begin`: which step of the branch it fell in)."""
        self.report()
        gaps = [(b - a, a - begin) for a, b in itertools.pairwise(self.commits) if b >= begin and a <= end]
        return max(gaps, default=(end - begin, 0.0))


@contextlib.contextmanager
def write_load(engine: Engine, host: str, port: int, password: str) -> Iterator[WriteLoad]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    proc = context.Process(target=_write_load, args=(":".join(engine.datastore), host, port, password, theirs),
                           daemon=True)
    proc.start()
    load = WriteLoad(ours)
    try:
        time.sleep(2.0)  # connected and writing in a steady state
        load.report()
        if not load.commits:
            raise RuntimeError("the write load committed nothing in 2 s")
        yield load
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            load.report("stop")
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()


# --- one branch ------------------------------------------------------------------------------------------

@dataclass
class Run:
    first_query_s: float
    active_s: float
    snapshot_ms: float | None = None
    frozen_ms: float | None = None
    to_freeze_ms: float | None = None
    stall_ms: float | None = None
    stall_at_s: float | None = None
    redis_load_s: float | None = None


SNAPSHOT_LINE = r"snapshot branch-{id} taken in (\d+) ms"
FROZE_LINE = re.compile(r"froze \S+ for (\d+) ms \((\d+) ms to freeze\)")
REDIS_LOADED = re.compile(r"DB loaded from (?:append only file|disk): ([\d.]+) seconds")


def _endpoint(view: dict[str, Any]) -> tuple[str, int] | None:
    return (str(view["addresses"][0]["address"]), int(view["port"])) if view.get("addresses") else None


def branch_once(client: httpx.Client, plane: Plane, engine: Engine, source: str, volume: int, password: str,
                name: str, load: WriteLoad | None) -> tuple[str, Run]:
    """Branch `source`: the seconds from before the POST to the tenant's first answered query and to ACTIVE,
    the snapshot's figures from the logs, and the source's longest write stall meanwhile if under `load`."""
    log_offset = plane.log.stat().st_size
    started = time.monotonic()
    branch = create_instance(client, engine.datastore, name, FLAVOR, volume,
                             {"restorePoint": {"instanceRef": source}})
    endpoint, viewed = None, 0.0
    while True:
        now = time.monotonic()
        if now - started > BRANCH_TIMEOUT:
            raise TimeoutError(f"branch {branch}: no answered query in {BRANCH_TIMEOUT:.0f} s")
        if endpoint is None or now - viewed > 0.5:  # the address once shown; then only an ERROR is looked for
            endpoint, viewed = _endpoint(instance_view(client, branch)), now
        if endpoint is not None and engine.first_query(*endpoint, password):
            break
        time.sleep(0.005 if endpoint is not None else 0.02)
    first = time.monotonic() - started
    poll(lambda: instance_in(client, branch, "ACTIVE"), BRANCH_TIMEOUT, 0.02)
    run = Run(first_query_s=first, active_s=time.monotonic() - started)
    if load is not None:
        gap, at = load.stall(started, started + first)
        run.stall_ms, run.stall_at_s = gap * 1000, round(at, 3)
    with plane.log.open("rb") as log:
        log.seek(log_offset)
        text = log.read().decode("utf-8", "replace")
    if found := re.search(SNAPSHOT_LINE.format(id=re.escape(branch)), text):
        run.snapshot_ms = float(found.group(1))
    if froze := FROZE_LINE.findall(text):
        run.frozen_ms, run.to_freeze_ms = float(froze[-1][0]), float(froze[-1][1])
    if engine.name == "redis":
        redis_log = plane.root / "state" / "instances" / branch.lower() / "volume" / "log" / "redis.log"
        if loaded := REDIS_LOADED.findall(redis_log.read_text(errors="replace")):
            run.redis_load_s = float(loaded[-1])
    return branch, run


def bench_size(client: httpx.Client, plane: Plane, engine: Engine, gb: float, runs: int) -> dict[str, list[Run]]:
    key, password, volume = engine.key, secrets.token_urlsafe(16), volume_gb(gb)
    source = create_instance(client, engine.datastore, f"bench-{key}-{gb:g}", FLAVOR, volume,
                             tenant_body(engine.name, password))
    results: dict[str, list[Run]] = {"after_load": [], "idle": [], "load": []}
    try:
        view = poll(lambda: instance_in(client, source, "ACTIVE"), 900, 0.1)
        host, port = str(view["addresses"][0]["address"]), int(view["port"])
        began = time.monotonic()
        engine.load(host, port, password, gb)
        print(f"{key} {gb:g} GB: loaded the source in {time.monotonic() - began:.0f} s", file=sys.stderr)
        poll(lambda: instance_in(client, source, "ACTIVE"), 900, 0.1)

        def one(mode: str, n: int, load: WriteLoad | None) -> None:
            branch, run = branch_once(client, plane, engine, source, volume, password, f"bench-{key}-{mode}{n}", load)
            # Run 0, the warm-up, right after the load: PostgreSQL's first checkpoint after it writes all of
            # it out; a MariaDB copy recovers what InnoDB has not flushed yet. Reported as "after_load".
            results[mode if n > 0 else "after_load"].append(run)
            extra = "" if run.stall_ms is None else f"; source stall {run.stall_ms:.0f} ms at +{run.stall_at_s:.2f} s"
            extra += "" if run.redis_load_s is None else f"; Redis loaded in {run.redis_load_s:.2f} s"
            print(f"{key} {gb:g} GB {mode} run {n or 'warm-up'}: first query {run.first_query_s:.2f} s (ACTIVE "
                  f"{run.active_s:.2f} s); snapshot {_ms(run.snapshot_ms)}, frozen {_ms(run.frozen_ms)} "
                  f"(+{_ms(run.to_freeze_ms)} to freeze){extra}", file=sys.stderr)
            delete_instance(client, branch)
            poll(lambda: instance_in(client, source, "ACTIVE"), 900, 0.05)

        one("idle", 0, None)
        began = time.monotonic()
        poll(lambda: engine.at_rest(host, port, password), SETTLE_TIMEOUT, 1.0)
        print(f"{key} {gb:g} GB: the source at rest {time.monotonic() - began:.0f} s after the warm-up",
              file=sys.stderr)
        for n in range(1, runs + 1):
            one("idle", n, None)
        with write_load(engine, host, port, password) as load:
            for n in range(1, runs + 1):
                one("load", n, load)
            rate = load.writes / (time.monotonic() - load.started)
        print(f"{key} {gb:g} GB: the write load made {rate:.0f} writes/s", file=sys.stderr)
    finally:
        delete_instance(client, source)
    return results


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} ms"


# --- figures -----------------------------------------------------------------------------------------------

def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, interpolated between the closest ranks."""
    return values[0] if len(values) == 1 else statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def row(engine: Engine, gb: float, mode: str, runs: list[Run]) -> dict[str, Any]:
    firsts = [r.first_query_s for r in runs]
    out: dict[str, Any] = {
        "runs": len(runs), "first_query_p50_s": round(percentile(firsts, 50), 3),
        "first_query_p95_s": round(percentile(firsts, 95), 3),
        "active_p50_s": round(statistics.median(r.active_s for r in runs), 3),
    }
    for name in ("snapshot_ms", "frozen_ms", "to_freeze_ms", "stall_ms", "redis_load_s"):
        if values := [v for v in (getattr(r, name) for r in runs) if v is not None]:
            base, unit = name.rsplit("_", 1)
            out[f"{base}_p50_{unit}"] = round(statistics.median(values), 3)
            out[f"{base}_max_{unit}"] = round(max(values), 3)
    line = (f"{engine.key:16s} {gb:4g} GB {mode:4s} {len(runs)} runs | first query p50 "
            f"{out['first_query_p50_s']:.2f} s p95 {out['first_query_p95_s']:.2f} s (ACTIVE p50 "
            f"{out['active_p50_s']:.2f} s) | snapshot p50 {_ms(out.get('snapshot_p50_ms'))}, frozen max "
            f"{_ms(out.get('frozen_max_ms'))}")
    if "stall_max_ms" in out:
        line += f" | source stall max {out['stall_max_ms']:.0f} ms p50 {out['stall_p50_ms']:.0f} ms"
    if "redis_load_p50_s" in out:
        line += f" | Redis load p50 {out['redis_load_p50_s']:.2f} s"
    if engine.name != "redis" and mode in ("idle", "load"):
        target = TARGET_IDLE_P95_S if mode == "idle" else TARGET_LOAD_P95_S
        out["meets_p95_target"] = out["first_query_p95_s"] < target
        line += f" | p95 < {target:g} s: {'ok' if out['meets_p95_target'] else 'MISSED'}"
        if "stall_max_ms" in out:
            out["meets_stall_target"] = out["stall_max_ms"] < TARGET_STALL_MS
            line += f", stall < {TARGET_STALL_MS:.0f} ms: {'ok' if out['meets_stall_target'] else 'MISSED'}"
    out["each"] = [asdict(r) for r in runs]
    print(line)
    return out


def flatness(engine: Engine, sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The largest size against the smallest: the first query's p50 (and, for Redis, the snapshot's)."""
    small, large = sizes[min(sizes, key=float)], sizes[max(sizes, key=float)]
    out: dict[str, Any] = {}
    figure = "snapshot_p50_ms" if engine.name == "redis" else "first_query_p50_s"
    for mode in ("idle", "load"):
        scale = 1000 if figure.endswith("_ms") else 1
        if figure in small[mode] and figure in large[mode]:
            a, b = small[mode][figure] / scale, large[mode][figure] / scale
            out[f"{mode}_{figure}"] = [small[mode][figure], large[mode][figure]]
            out[f"{mode}_flat"] = b <= a * FLAT_RATIO + FLAT_SLACK
    verdicts = ", ".join(f"{mode} {out[f'{mode}_{figure}']} {'flat' if out[f'{mode}_flat'] else 'NOT FLAT'}"
                         for mode in ("idle", "load") if f"{mode}_flat" in out)
    print(f"{engine.key} {figure} at {min(sizes, key=float)} GB vs {max(sizes, key=float)} GB: "
          f"{verdicts}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="branches per engine, size and mode (default 5)")
    parser.add_argument("--engine", action="append", help=f"ENGINE:VERSION (repeatable); default {' '.join(ENGINES)}")
    parser.add_argument("--sizes", default="1,8", help="GB of data for PostgreSQL and MariaDB (default 1,8)")
    parser.add_argument("--redis-sizes", default="0.2,1", help="GB of data for Redis (default 0.2,1)")
    parser.add_argument("--pool-gb", type=int, default=0,
                        help="the copy-on-write pool's image (default: two of the largest volume + 6)")
    parser.add_argument("--log", type=Path, help="keep the server's log in this file")
    args = parser.parse_args()
    engines = [engine_for(spec) for spec in (args.engine or ENGINES)]
    sizes = {e.name: [float(s) for s in (args.redis_sizes if e.name == "redis" else args.sizes).split(",")]
             for e in engines}
    largest = max(volume_gb(gb) for each in sizes.values() for gb in each)
    pool_gb = args.pool_gb or 2 * largest + 6
    SCRATCH.mkdir(mode=0o755, parents=True, exist_ok=True)
    if shutil.disk_usage(SCRATCH).free < (pool_gb + 5) * GIB:
        raise SystemExit(f"{SCRATCH} needs {pool_gb + 5} GB free for a {pool_gb} GB pool image")
    root = SCRATCH / f"branch-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    plane = Plane(root, ADDRESS_POOL, USER_PREFIX, env={
        "REDDWARF_LOCAL_USE_COW_POOL": "true", "REDDWARF_LOCAL_POOL_GB": str(pool_gb),
        "REDDWARF_MAX_VOLUME_SIZE_GB": str(largest), "REDDWARF_MAX_VOLUMES_PER_PROJECT": str(2 * largest + 1),
    })
    results: dict[str, dict[float, dict[str, list[Run]]]] = {}
    try:
        client = plane.start()
        for engine in engines:
            for gb in sizes[engine.name]:
                results.setdefault(engine.key, {})[gb] = bench_size(client, plane, engine, gb, args.runs)
    finally:
        plane.stop()
        if args.log is not None and plane.log.exists():
            shutil.copyfile(plane.log, args.log)
        sweep(root, USER_PREFIX)
        shutil.rmtree(root, ignore_errors=True)
    figures: dict[str, Any] = {
        "benchmark": "branch", "runs": args.runs, "pool_gb": pool_gb, "engines": {},
        "targets": {"first_query_p95_idle_s": TARGET_IDLE_P95_S, "first_query_p95_load_s": TARGET_LOAD_P95_S,
                    "source_stall_ms": TARGET_STALL_MS, "flat": f"largest p50 <= {FLAT_RATIO} x smallest + "
                                                                f"{FLAT_SLACK * 1000:.0f} ms"},
    }
    for engine in engines:
        by_size = {f"{gb:g}": {mode: row(engine, gb, mode, runs) for mode, runs in modes.items()}
                   for gb, modes in results.get(engine.key, {}).items()}
        figures["engines"][engine.key] = {"sizes": by_size}
        if len(by_size) > 1:
            figures["engines"][engine.key]["flatness"] = flatness(engine, by_size)
    print(f"targets: PostgreSQL and MariaDB first query p95 < {TARGET_IDLE_P95_S:g} s idle, < {TARGET_LOAD_P95_S:g} s "
          f"under load, the same at the largest size as at the smallest; source write stall < "
          f"{TARGET_STALL_MS:.0f} ms; Redis: the snapshot flat in size, its load time beside it "
          f"(flat: {figures['targets']['flat']})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""The write gap of a switchover (`promote_to_replica_source`) under a steady write load.

A `reddwarf server` on a scratch directory; per engine a source with one replica, and a writer that inserts one
row per transaction, as fast as the server acknowledges, into whichever member takes writes (it tries the
others when its member refuses). Each run promotes the member that is a replica now (so the runs switch back and
forth) and measures:

- the write gap: the last write the old primary acknowledged -> the first the new primary acknowledged;
- the promote: the POST -> the promoted member ACTIVE and the primary (its followers re-pointed);
- that no acknowledged write was lost (every acknowledged row is on the new primary afterwards).

There is no raw tool to compare with: the gap is what a client sees, the stop of the old primary, the replay of
its last record and the promotion (the API's and the worker's own share is the rest of the promote's time).
Target: a write gap of at most 2 s (median). The last line is one JSON object.

A row a stopping primary committed but never acknowledged (its connection cut after the commit) is found on the
next member as a duplicate and skipped: it is there, just not counted.

    python bench/switchover.py [--runs 5] [--engine postgresql:18 --engine mariadb:10.11 --engine redis:7.0 ...]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pymysql
import redis

from support import (
    SCRATCH,
    STEP_TIMEOUT,
    Plane,
    create_instance,
    delete_instance,
    instance_in,
    instance_view,
    poll,
    sweep,
    tenant_body,
)

ENGINES = ("postgresql:15", "postgresql:18", "mariadb:10.11", "redis:7.0")
USER_PREFIX = "rdsw-"
ADDRESS_POOL = "127.0.99.0/24"
TARGET_GAP_S = 2.0
PASSWORD = "bench-" + secrets.token_hex(8)


class Writer:
    """Inserts 1, 2, ... into `w` on whichever member takes writes; keeps (time acknowledged, member, n)."""

    def __init__(self, engine: str, endpoints: dict[str, tuple[str, int]]) -> None:
        self.engine = engine
        self.endpoints = endpoints
        self.acks: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            for member, endpoint in self.endpoints.items():
                try:
                    conn = _connect(self.engine, endpoint, timeout=2)
                    try:
                        write = _writes(self.engine, conn)
                        while not self._stop.is_set():
                            write(n + 1)
                            n += 1
                            self.acks.append((time.monotonic(), member, n))
                    finally:
                        conn.close()
                except (psycopg.errors.UniqueViolation, pymysql.err.IntegrityError):
                    n += 1  # committed, never acknowledged
                except (psycopg.Error, pymysql.err.MySQLError, redis.RedisError):
                    time.sleep(0.002)
                if self._stop.is_set():
                    return

    def count(self) -> int:
        return len(self.acks)


def _writes(engine: str, conn: Any) -> Callable[[int], Any]:
    """One acknowledged write of number `n`: a row of `w` (SQL), or the key `w:<n>` (Redis)."""
    if engine == "redis":
        return lambda n: conn.set(f"w:{n}", "1")
    cursor = conn.cursor()
    return lambda n: cursor.execute("insert into w values (%s)", (n,))


def _numbers(engine: str, endpoint: tuple[str, int]) -> set[int]:
    """Every number written on the member at `endpoint`."""
    if engine == "redis":
        conn = _connect(engine, endpoint)
        try:
            return {int(key.decode().split(":", 1)[1]) for key in conn.scan_iter("w:*", count=10000)}
        finally:
            conn.close()
    return {int(row[0]) for row in _rows(engine, endpoint, "select n from w")}


def _connect(engine: str, endpoint: tuple[str, int], timeout: float = 5) -> Any:
    """An autocommit DB-API connection of the tenant `app` to its database `app` (Redis: a client as `app`)."""
    if engine == "redis":
        return redis.Redis(host=endpoint[0], port=endpoint[1], username="app", password=PASSWORD,
                           socket_timeout=10, socket_connect_timeout=timeout)
    if engine == "mariadb":
        return pymysql.connect(host=endpoint[0], port=endpoint[1], user="app", password=PASSWORD, database="app",
                               connect_timeout=timeout, read_timeout=10, write_timeout=10, autocommit=True)
    return psycopg.connect(host=endpoint[0], port=endpoint[1], user="app", password=PASSWORD, dbname="app",
                           connect_timeout=int(timeout), autocommit=True)


def _rows(engine: str, endpoint: tuple[str, int], query: str) -> list[tuple[Any, ...]]:
    conn = _connect(engine, endpoint)
    try:
        cursor = conn.cursor()
        cursor.execute(query)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description is not None else []
    finally:
        conn.close()


def _endpoint(view: dict[str, Any]) -> tuple[str, int]:
    return str(view["addresses"][0]["address"]), int(view["port"])


def _is_primary(client: httpx.Client, instance_id: str) -> dict[str, Any] | None:
    view = instance_view(client, instance_id)
    return view if view["status"] == "ACTIVE" and not view.get("replica_of") else None


def _streaming(client: httpx.Client, instance_id: str) -> bool:
    found = instance_view(client, instance_id).get("replication") or {}
    return bool(found.get("state") == "streaming")


def bench_engine(client: httpx.Client, spec: str, runs: int) -> dict[str, Any]:
    datastore = tuple(spec.split(":", 1))
    source = create_instance(client, (datastore[0], datastore[1]), f"sw-{datastore[1]}", "1", 1,
                             tenant_body(datastore[0], PASSWORD))
    views = {source: poll(lambda: instance_in(client, source, "ACTIVE"), STEP_TIMEOUT, 0.1)}
    if datastore[0] != "redis":
        _rows(datastore[0], _endpoint(views[source]), "create table w (n bigint primary key)")
    response = client.post("/instances", json={"instance": {"name": f"sw-{datastore[1]}-r", "replica_of": source}})
    response.raise_for_status()
    replica = str(response.json()["instance"]["id"])
    views[replica] = poll(lambda: instance_in(client, replica, "ACTIVE"), STEP_TIMEOUT, 0.1)
    endpoints = {member: _endpoint(view) for member, view in views.items()}
    gaps: list[float] = []
    promotes: list[float] = []
    writer = Writer(datastore[0], endpoints)
    writer.start()
    try:
        primary, standby = source, replica
        for _ in range(runs):
            poll(lambda s=standby: _streaming(client, s), 60, 0.1)
            before = writer.count()
            poll(lambda b=before: writer.count() >= b + 300, 60, 0.01)
            asked = time.monotonic()
            client.post(f"/instances/{standby}/action", json={"promote_to_replica_source": {}}).raise_for_status()
            poll(lambda s=standby: _is_primary(client, s), STEP_TIMEOUT, 0.05)
            promotes.append(time.monotonic() - asked)
            poll(lambda s=standby, a=asked: any(m == s and t > a for t, m, _ in writer.acks[-50:]), 60, 0.01)
            last_old = max(t for t, m, _ in writer.acks if m == primary and t >= asked - 5)
            first_new = min(t for t, m, _ in writer.acks if m == standby and t > asked)
            gaps.append(first_new - last_old)
            primary, standby = standby, primary
    finally:
        writer.stop()
    acknowledged = [n for _, _, n in writer.acks]
    on_primary = _numbers(datastore[0], endpoints[primary])
    lost = sum(1 for n in acknowledged if n not in on_primary)
    for member in (standby, primary):
        delete_instance(client, member)
    return {
        "runs": runs, "write_gap_s": [round(g, 3) for g in gaps],
        "write_gap_median_s": round(statistics.median(gaps), 3),
        "promote_s": [round(p, 3) for p in promotes], "promote_median_s": round(statistics.median(promotes), 3),
        "acknowledged": len(acknowledged), "lost": lost,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="switchovers per engine (default 5)")
    parser.add_argument("--engine", action="append", help=f"ENGINE:VERSION (repeatable); default {' '.join(ENGINES)}")
    parser.add_argument("--log", type=Path, help="keep the server's log in this file")
    args = parser.parse_args()
    SCRATCH.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = SCRATCH / f"switchover-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    plane = Plane(root, ADDRESS_POOL, USER_PREFIX, env={"REDDWARF_REPLICATION_CHECK_INTERVAL": "0.5"})
    figures: dict[str, Any] = {"benchmark": "switchover", "runs": args.runs, "target_write_gap_s": TARGET_GAP_S,
                               "engines": {}}
    try:
        client = plane.start()
        for spec in args.engine or ENGINES:
            result = bench_engine(client, spec, args.runs)
            figures["engines"][spec] = result
            print(f"{spec}: write gap median {result['write_gap_median_s']:.3f} s {result['write_gap_s']}, promote "
                  f"median {result['promote_median_s']:.3f} s, {result['acknowledged']} writes acknowledged, "
                  f"{result['lost']} lost", flush=True)
    finally:
        plane.stop()
        if args.log is not None and plane.log.exists():
            shutil.copyfile(plane.log, args.log)
        sweep(root, USER_PREFIX)
        shutil.rmtree(root, ignore_errors=True)
    print(f"target: write gap median <= {TARGET_GAP_S:g} s; no acknowledged write lost")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

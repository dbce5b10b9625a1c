"""Automatic failover under a steady write load, through the set's writer endpoint (docs/failover.md).

A `reddwarf server` on a scratch directory (failover settings at their defaults, but `failover_quiet` 0 so that
one set fails over run after run); per engine a primary with one replica, and a writer that writes one row (key)
at a time, as fast as the server acknowledges, always to the writer endpoint (the address the primary had when
it was created), reconnecting at once when its connection breaks. Each run breaks whichever member is the
primary now, one of these ways:

- `kill`: every process of its server SIGKILLed while something else holds its address, so that its restarts
  fail (a dead primary; the holder accepts and closes every connection);
- `sigstop`: its main process stopped (PostgreSQL's postmaster: a kept connection to a backend keeps
  answering, no new session starts; MariaDB's and Redis's only process: nothing answers);
- `freeze`: its whole cgroup frozen (a hung host), with `--fault freeze`.

and measures:

- the RTO: the last write acknowledged before the fault -> the first acknowledged after it, through the same
  endpoint (the client's outage: detection, grace, fencing, promotion and the endpoint's switch);
- the acknowledged writes lost: those the new primary does not have (asynchronous replication: what the old
  primary acknowledged and no replica had received is lost, as with any asynchronous replica; `--mode sync`:
  the set is synchronous with durability "available", each fault waits until the set says it is synchronous
  again, and nothing acknowledged may be lost);
- then (`--switchovers`, default 3) the write gap of a switchover through the writer endpoint.

Then the fault is undone and the run waits for the old primary to rejoin as a replica before the next one.
There is no raw tool to compare with; Patroni with etcd on this machine took 9.7 s (its 10 s lock TTL;
../shared/reference/measured-facts.md). Targets: RTO median and worst <= 5 s. The last line is one JSON object.

    python bench/failover.py [--runs 5] [--engine postgresql:15 ...] [--fault kill --fault sigstop ...] [--mode sync]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pymysql
import redis

from reddwarf.runtimes.local.cgroups import Cgroups, detect
from reddwarf.runtimes.local.paths import instance_key
from support import (
    SCRATCH,
    STEP_TIMEOUT,
    Plane,
    create_instance,
    delete_instance,
    instance_view,
    poll,
    sweep,
    tenant_body,
)
from switchover import PASSWORD, _connect, _numbers, _rows, _writes

ENGINES = ("postgresql:15", "mariadb:10.11", "redis:7.0")
FAULTS = ("kill", "sigstop")
USER_PREFIX = "rdfo-"
ADDRESS_POOL = "127.0.98.0/24"
TARGET_RTO_S = 5.0
CGROUPS = Cgroups(detect(Path("/sys/fs/cgroup")), Path("/sys/fs/cgroup"), "reddwarf")
REJOIN_TIMEOUT = 300.0


class Writer:
    """Writes 1, 2, ... through one endpoint; keeps (time acknowledged, n)."""

    def __init__(self, engine: str, endpoint: tuple[str, int]) -> None:
        self.engine, self.endpoint = engine, endpoint
        self.acks: list[tuple[float, int]] = []
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
            try:
                conn = _connect(self.engine, self.endpoint, timeout=2)
                try:
                    write = _writes(self.engine, conn)
                    while not self._stop.is_set():
                        write(n + 1)
                        n += 1
                        self.acks.append((time.monotonic(), n))
                finally:
                    conn.close()
            except (psycopg.errors.UniqueViolation, pymysql.err.IntegrityError):
                n += 1  # committed, never acknowledged
            except (psycopg.Error, pymysql.err.MySQLError, redis.RedisError, OSError):
                time.sleep(0.005)


class Holder:
    """Takes an address as root the moment it is free (SO_REUSEADDR, as servers bind; started before the kill so
    that the dead server's restart loses the race) and keeps it: every connection is accepted and closed."""

    def __init__(self, endpoint: tuple[str, int]) -> None:
        self._endpoint = endpoint
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self._sock is None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(self._endpoint)
                sock.listen(64)
                sock.settimeout(0.1)
                self._sock = sock
            except OSError:
                sock.close()
                time.sleep(0.001)
        self._bound.set()
        while not self._stop.is_set() and self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            conn.close()

    def wait_bound(self, timeout: float) -> None:
        if not self._bound.wait(timeout) or self._sock is None:
            raise SystemExit(f"{self._endpoint} was never free to hold")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._sock is not None:
            self._sock.close()


def _server_pid(state: Path, instance_id: str) -> int:
    record = state / "instances" / instance_id.lower() / "private" / "server.json"
    return int(json.loads(record.read_text())["pid"])


def _pids_of_user(name: str) -> list[int]:
    done = subprocess.run(["pgrep", "-u", name], capture_output=True, text=True, check=False)
    return [int(p) for p in done.stdout.split()]


class Fault:
    def __init__(self, kind: str, state: Path, user_prefix: str, primary: dict[str, Any]) -> None:
        self.kind, self.state = kind, state
        self.id = str(primary["id"])
        self.user = user_prefix + instance_key(self.id)
        self.endpoint = (str(primary["addresses"][0]["address"]), int(primary["port"]))
        self.holder: Holder | None = None

    def inflict(self) -> None:
        if self.kind == "kill":
            self.holder = Holder(self.endpoint)
            for pid in _pids_of_user(self.user):
                os.kill(pid, signal.SIGKILL)
            self.holder.wait_bound(10)
        elif self.kind == "sigstop":
            os.kill(_server_pid(self.state, self.id), signal.SIGSTOP)
        elif not CGROUPS.freeze(self.user):
            raise SystemExit("this host has no freezer for an instance's cgroup")

    def undo(self) -> None:
        if self.holder is not None:
            self.holder.close()
        if self.kind == "freeze":
            CGROUPS.thaw(self.user)


def _is_primary(client: httpx.Client, instance_id: str) -> bool:
    view = instance_view(client, instance_id)
    return view["status"] == "ACTIVE" and not view.get("replica_of")


def _follows(client: httpx.Client, instance_id: str, primary: str) -> bool:
    response = client.get(f"/instances/{instance_id}")  # ERROR (fenced) until it has rejoined: not a failure here
    response.raise_for_status()
    view = response.json()["instance"]
    found = view.get("replication") or {}
    return (view["status"] == "ACTIVE" and (view.get("replica_of") or {}).get("id") == primary
            and found.get("state") == "streaming")


def _wait_rejoined(client: httpx.Client, state: Path, member: str, primary: str,
                   policy: dict[str, Any] | None = None) -> str:
    """Until `member` follows `primary` and streams; the member that does. A MariaDB former primary that wrote
    what no replica received cannot follow (error 1236: there is no rewind) and stays out, Degraded: it is
    deleted and a new replica made in its place, as an operator would (docs/known-gaps.md)."""
    deadline = time.monotonic() + REJOIN_TIMEOUT
    while time.monotonic() < deadline:
        if _follows(client, member, primary):
            return member
        shown = client.get(f"/instances/{member}").json()["instance"].get("replication") or {}
        if "1236" in str(shown.get("reason", "")):
            print(f"  {member} diverged (MariaDB error 1236): replaced by a new replica", flush=True)
            delete_instance(client, member)
            again: dict[str, Any] = {"name": "fo-again", "replica_of": primary}
            if policy is not None:  # the set may have been dissolved with it (its primary is the founder)
                again["replication"] = policy
            response = client.post("/instances", json={"instance": again})
            response.raise_for_status()
            member = str(response.json()["instance"]["id"])
        time.sleep(0.1)
    log = state / "instances" / member.lower() / "volume" / "log" / "server.log"
    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    shown = client.get(f"/instances/{member}").json()["instance"].get("replication")
    raise SystemExit(f"{member} did not rejoin {primary}: {shown}\n" + "\n".join(tail))


def _synchronous(client: httpx.Client, primary: str) -> bool:
    shown = client.get(f"/instances/{primary}").json()["instance"].get("replication") or {}
    return bool(shown.get("synchronous", {}).get("state") == "sync")


def _synchronous_within(client: httpx.Client, primary: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _synchronous(client, primary):
            return True
        time.sleep(0.1)
    return False


def bench_engine(client: httpx.Client, plane: Plane, spec: str, faults: list[str], runs: int,
                 switchovers: int, mode: str) -> dict[str, Any]:
    engine, version = spec.split(":", 1)
    source = create_instance(client, (engine, version), f"fo-{version}", "1", 1, tenant_body(engine, PASSWORD))
    view = poll(lambda: instance_view(client, source) if _is_primary(client, source) else None, STEP_TIMEOUT, 0.1)
    policy = {"mode": "sync", "durability": "available"} if mode == "sync" else {"mode": "async"}
    response = client.post("/instances", json={"instance": {"name": f"fo-{version}-r", "replica_of": source,
                                                            "replication": policy}})
    response.raise_for_status()
    replica = str(response.json()["instance"]["id"])
    poll(lambda: _follows(client, replica, source), STEP_TIMEOUT, 0.1)
    view = instance_view(client, source)
    writer_endpoint = (str(view["endpoints"]["writer"]["address"]), int(view["endpoints"]["writer"]["port"]))
    if engine != "redis":
        _rows(engine, writer_endpoint, "create table w (n bigint primary key)")
    writer = Writer(engine, writer_endpoint)
    writer.start()
    state = plane.root / "state"
    results: dict[str, Any] = {}
    primary, standby = source, replica
    last_struck = 0.0
    try:
        for kind in faults:
            rtos: list[float] = []
            lost: list[int] = []
            for _ in range(runs):
                standby = _wait_rejoined(client, state, standby, primary, policy)
                while mode == "sync" and not _synchronous_within(client, primary, 60.0):
                    # A set fails over by itself only while it is known synchronous: its replica must stream
                    # (a MariaDB former primary that diverged only says so after it seemed to rejoin).
                    standby = _wait_rejoined(client, state, standby, primary, policy)
                count = len(writer.acks)
                poll(lambda c=count: len(writer.acks) >= c + 300, 60, 0.01)
                fault = Fault(kind, state, USER_PREFIX, instance_view(client, primary))
                struck = time.monotonic()
                fault.inflict()
                try:
                    poll(lambda s=standby: _is_primary(client, s), STEP_TIMEOUT, 0.05)
                    poll(lambda t=struck: writer.acks[-1][0] > t + 0.05 if writer.acks else False, 60, 0.01)
                finally:
                    fault.undo()
                acks = list(writer.acks)
                before = [a for a in acks if a[0] <= struck]
                after = [a for a in acks if a[0] > struck]
                since_last, last_struck = last_struck, struck
                # The outage: from the last acknowledgment before the fault to the first after it (a SIGSTOPped
                # postmaster's backends keep acknowledging on their connection until the fence: the largest gap).
                window = [before[-1], *after]
                rtos.append(max(b[0] - a[0] for a, b in itertools.pairwise(window)))
                present = _numbers(engine, writer_endpoint)
                # Acknowledged since the previous fault and before this one, and not on the new primary.
                lost.append(sum(1 for t, n in before if t > since_last and n not in present))
                primary, standby = standby, primary
            results[kind] = {"rto_s": [round(r, 3) for r in rtos], "rto_median_s": round(statistics.median(rtos), 3),
                             "rto_worst_s": round(max(rtos), 3), "lost": lost}
            print(f"{spec} {kind}: RTO median {results[kind]['rto_median_s']:.3f} s, worst "
                  f"{results[kind]['rto_worst_s']:.3f} s {results[kind]['rto_s']}; acknowledged writes lost {lost}",
                  flush=True)
        gaps: list[float] = []
        for _ in range(switchovers):
            standby = _wait_rejoined(client, state, standby, primary, policy)
            count = len(writer.acks)
            poll(lambda c=count: len(writer.acks) >= c + 300, 60, 0.01)
            asked = time.monotonic()
            client.post(f"/instances/{standby}/action", json={"promote_to_replica_source": {}}).raise_for_status()
            poll(lambda s=standby: _is_primary(client, s), STEP_TIMEOUT, 0.05)
            poll(lambda a=asked: writer.acks[-1][0] > a + 0.05, 60, 0.01)
            window = [a for a in writer.acks if a[0] > asked - 5]
            gaps.append(max(b[0] - a[0] for a, b in itertools.pairwise(window)))
            primary, standby = standby, primary
        if gaps:
            results["switchover_gap_s"] = [round(g, 3) for g in gaps]
            results["switchover_gap_median_s"] = round(statistics.median(gaps), 3)
            print(f"{spec} switchover through the writer endpoint: write gap median "
                  f"{results['switchover_gap_median_s']:.3f} s {results['switchover_gap_s']}", flush=True)
    finally:
        writer.stop()
    results["acknowledged"] = len(writer.acks)
    for member in (standby, primary):
        delete_instance(client, member)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="failovers per engine and fault (default 5)")
    parser.add_argument("--switchovers", type=int, default=3, help="switchovers per engine (default 3)")
    parser.add_argument("--engine", action="append", help=f"ENGINE:VERSION (repeatable); default {' '.join(ENGINES)}")
    parser.add_argument("--fault", action="append", choices=("kill", "sigstop", "freeze"),
                        help=f"repeatable; default {' '.join(FAULTS)}")
    parser.add_argument("--log", type=Path, help="keep the server's log in this file")
    parser.add_argument("--mode", choices=("async", "sync"), default="async",
                        help="the sets' replication mode (sync: durability available); default async")
    args = parser.parse_args()
    SCRATCH.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = SCRATCH / f"failover-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    plane = Plane(root, ADDRESS_POOL, USER_PREFIX, env={"REDDWARF_REPLICATION_CHECK_INTERVAL": "0.5",
                                                        "REDDWARF_FAILOVER_QUIET": "0"})
    figures: dict[str, Any] = {"benchmark": "failover", "runs": args.runs, "mode": args.mode,
                               "target_rto_s": TARGET_RTO_S, "engines": {}}
    try:
        client = plane.start()
        for spec in args.engine or ENGINES:
            if args.mode == "sync" and spec.startswith("redis:"):
                print(f"{spec}: asynchronous only (its capabilities say so): not run with --mode sync", flush=True)
                continue
            figures["engines"][spec] = bench_engine(client, plane, spec, args.fault or list(FAULTS), args.runs,
                                                    args.switchovers, args.mode)
    finally:
        plane.stop()
        if args.log is not None and plane.log.exists():
            shutil.copyfile(plane.log, args.log)
        sweep(root, USER_PREFIX)
        shutil.rmtree(root, ignore_errors=True)
    print(f"target: RTO median and worst <= {TARGET_RTO_S:g} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

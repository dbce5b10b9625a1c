"""How long a replica create takes, seeded from a copy-on-write snapshot of its primary, by pg_basebackup, or
from a backup of its primary taken for it.

Three `reddwarf server`s on scratch directories: one with the copy-on-write volume pool (replicas are seeded
from a snapshot of their primary, docs/replication.md), one without (`REDDWARF_LOCAL_USE_COW_POOL=false`:
seeded by pg_basebackup through the replica's slot), and one with `REDDWARF_REPLICA_SEED=backup` (a full backup
of the primary, by a child operation, restored into the replica: Trove's way, MariaDB's without a pool). In
each, a PostgreSQL source holding `--gb` of pgbench data, then
`--runs` replica creates, each timed from the POST to the replica ACTIVE (its data checked against the source's)
and deleted again.

The figures are the ratios of the snapshot's and the backup's medians to pg_basebackup's (the raw tool here:
what a replica create costs without the pool). The last line is one JSON object.

    python bench/replica_seed.py [--gb 1] [--runs 3] [--version 18]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import time
from typing import Any

import httpx
import psycopg

from support import (
    PG_BIN,
    SCRATCH,
    STEP_TIMEOUT,
    Plane,
    create_instance,
    delete_instance,
    instance_in,
    load_pgbench,
    poll,
    sweep,
    tenant_body,
)

PGBENCH_SCALE_PER_GB = 70
FLAVOR = "4"
PASSWORD = "bench-" + secrets.token_hex(8)
MODES = {
    # mode: (address pool, user prefix, extra settings)
    "snapshot": ("127.0.97.0/24", "rdrs-", {}),
    "pg_basebackup": ("127.0.96.0/24", "rdrb-", {"REDDWARF_LOCAL_USE_COW_POOL": "false"}),
    "backup": ("127.0.183.0/24", "rdrk-", {"REDDWARF_REPLICA_SEED": "backup"}),
}


def _endpoint(view: dict[str, Any]) -> tuple[str, int]:
    return str(view["addresses"][0]["address"]), int(view["port"])


def _rows(endpoint: tuple[str, int]) -> int:
    with psycopg.connect(host=endpoint[0], port=endpoint[1], user="app", password=PASSWORD, dbname="app",
                         connect_timeout=5, autocommit=True) as conn:
        row = conn.execute("select count(*) from pgbench_accounts").fetchone()
    return int(row[0]) if row else -1


def bench_mode(client: httpx.Client, version: str, gb: float, runs: int) -> dict[str, Any]:
    source = create_instance(client, ("postgresql", version), "seed-src", FLAVOR, max(2, round(gb * 2) + 1),
                             tenant_body("postgresql", PASSWORD))
    view = poll(lambda: instance_in(client, source, "ACTIVE"), STEP_TIMEOUT, 0.1)
    host, port = _endpoint(view)
    load_pgbench(PG_BIN[version], port, max(1, round(gb * PGBENCH_SCALE_PER_GB)), host=host, password=PASSWORD)
    expected = _rows((host, port))
    times: list[float] = []
    for run in range(runs):
        asked = time.monotonic()
        response = client.post("/instances", json={"instance": {"name": f"seed-r{run}", "replica_of": source}})
        response.raise_for_status()
        replica = str(response.json()["instance"]["id"])
        shown = poll(lambda r=replica: instance_in(client, r, "ACTIVE"), STEP_TIMEOUT, 0.05)
        times.append(time.monotonic() - asked)
        found = _rows(_endpoint(shown))
        if found != expected:
            raise RuntimeError(f"replica {replica} holds {found} rows, its source {expected}")
        delete_instance(client, replica)
    delete_instance(client, source)
    return {"create_s": [round(t, 3) for t in times], "create_median_s": round(statistics.median(times), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="pgbench data on the source, in GB (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="replica creates per mode (default 3)")
    parser.add_argument("--version", default="18", choices=sorted(PG_BIN), help="PostgreSQL version (default 18)")
    args = parser.parse_args()
    SCRATCH.mkdir(mode=0o755, parents=True, exist_ok=True)
    figures: dict[str, Any] = {"benchmark": "replica_seed", "engine": f"postgresql:{args.version}", "gb": args.gb,
                               "runs": args.runs, "modes": {}}
    for mode, (pool, prefix, env) in MODES.items():
        root = SCRATCH / f"replica-seed-{mode}-{secrets.token_hex(4)}"
        root.mkdir(mode=0o755)
        plane = Plane(root, pool, prefix, env=env)
        try:
            result = bench_mode(plane.start(), args.version, args.gb, args.runs)
        finally:
            plane.stop()
            sweep(root, prefix)
            shutil.rmtree(root, ignore_errors=True)
        figures["modes"][mode] = result
        print(f"{mode}: replica create median {result['create_median_s']:.3f} s {result['create_s']}", flush=True)
    snapshot, basebackup, backup = (figures["modes"][m]["create_median_s"]
                                    for m in ("snapshot", "pg_basebackup", "backup"))
    figures["ratio_snapshot_to_pg_basebackup"] = round(snapshot / basebackup, 3)
    figures["ratio_backup_to_pg_basebackup"] = round(backup / basebackup, 3)
    print(f"a snapshot seed takes {figures['ratio_snapshot_to_pg_basebackup']:.2f}x the time of pg_basebackup's, "
          f"a backup seed {figures['ratio_backup_to_pg_basebackup']:.2f}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

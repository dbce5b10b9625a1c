"""Backup and restore benchmark: Reddwarf's full backup and restore of ~1 GB versus the raw tools, same run.

Runs a real `reddwarf server` (the default filesystem backup target, under its state directory) on a
scratch directory under /var/tmp and a private address sub-pool. For each engine version it:

1. creates an instance (flavor 4, a 5 GB volume) with a tenant user and database, and loads ~1 GB into it
   as the tenant over TCP: PostgreSQL, the version's `pgbench -i -s 70`; MariaDB, an InnoDB table of 7 M
   rows of ~150 bytes (INSERT ... SELECT from `seq_1_to_N`); Redis, 1 M keys of 1000-byte values
   (pipelined SETs);
2. builds the raw side on the same file system (the scratch directory, beside the state directory): the
   same engine version's server, run as an unprivileged OS user, loaded with the same data the same way;
3. takes one untimed backup on each side (the checkpoint that follows the load, and the shipping of the
   load's archived WAL, are not what a backup costs in a steady state), then `--runs` paired rounds, each:
   - raw backup: the engine's tool with the options Reddwarf uses (`engines/*/backup.py`) as the raw user,
     piped through `zstd -1 -T2` into a file, then `sync` of that file (Reddwarf fsyncs what it stores);
   - Reddwarf backup: POST /backups until the API shows COMPLETED;
   - raw restore: `zstd -d` of that file piped into the extraction (`tar -x`, `mbstream -x`), the steps
     Reddwarf's restore plan runs after it (MariaDB: `--prepare`, `--move-back`), a `sync -f` of what it
     wrote (a restore is on disk before its server starts, as Reddwarf's: Redis would otherwise be the only
     side never flushing ~1 GB; PostgreSQL flushes its data directory at start anyway), then the server started
     on it until a first connection answers (Redis: PING, which answers only once the keyspace is loaded);
   - Reddwarf restore: POST /instances with `restorePoint` (the same flavor and volume) until ACTIVE; the
     restored instance and both backups are deleted before the next round (untimed).

Throughput is MB (10^6 bytes) of the tool's uncompressed stream per second of wall time: the backup's
`uncompressed_size` for Reddwarf, the decompressed length of the file for raw. Prints, per engine, the
medians of the backup seconds and MB/s of both sides and of the restore seconds, and the ratios: backup
Reddwarf / raw throughput (target >= 0.9), restore Reddwarf / raw time (target <= 1.2), each the median of
the rounds' own ratios (paired: a drift of the machine's speed moves both sides of a round alike; the ratio
of the medians is in the JSON too). The last line is one JSON object with every figure (each run's too).

Run as root (OS users, volumes) from a checkout with its venv (`python3 -m venv .venv &&
.venv/bin/pip install -e '.[dev]'`), the engines (PostgreSQL 15 and 18, MariaDB 10.11 with mariadb-backup,
Redis 7.0) and zstd installed; `--engine` runs a subset:

    .venv/bin/python bench/backup.py --runs 3
    .venv/bin/python bench/backup.py --runs 1 --engine postgresql:18 --engine redis:7.0

Nothing is left behind: instances are deleted through the API, the server is stopped, and whatever a failed
run left (processes and OS users of the bench's user prefix, mounts under the scratch directory, the raw
user) is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pymysql
import redis

from support import (
    GIB,
    LOAD_TIMEOUT,
    PG_BIN,
    SCRATCH,
    STEP_TIMEOUT,
    Plane,
    create_instance,
    delete_instance,
    free_port,
    instance_in,
    load_innodb,
    load_pgbench,
    load_redis,
    poll,
    stop,
    sweep,
    tenant_body,
)

RAW_USER = "rdbench-bkraw"
USER_PREFIX = "rdbk-"
ADDRESS_POOL = "127.0.97.0/24"
ENGINES = ("postgresql:15", "postgresql:18", "mariadb:10.11", "redis:7.0")
FLAVOR = "4"
VOLUME_GB = 5
PGBENCH_SCALE = 70
INNODB_ROWS = 7_000_000
REDIS_KEYS = 1_000_000
REDIS_VALUE = 1000
ZSTD = ("zstd", "-1", "-T2", "-q")
MB = 1_000_000


def raw_user() -> pwd.struct_passwd:
    if subprocess.run(["id", RAW_USER], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RAW_USER],
                       check=True)
    return pwd.getpwnam(RAW_USER)


def _as(entry: pwd.struct_passwd) -> dict[str, Any]:
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def owned_dir(path: Path, entry: pwd.struct_passwd) -> Path:
    path.mkdir(mode=0o700)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def decompressed_bytes(path: Path) -> int:
    """The uncompressed length of a zstd file (a streamed frame records none): decompress and count."""
    proc = subprocess.Popen(["zstd", "-dc", "-q", str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    total = 0
    while piece := proc.stdout.read(1 << 20):
        total += len(piece)
    if proc.wait() != 0:
        raise RuntimeError(f"zstd -d of {path} failed")
    return total


# --- engines: the tenant's load, the raw server, the raw backup and restore -------------------------------

@dataclass
class RawServer:
    """A raw server of the engine version, run as the raw user from `data` on `port`."""

    work: Path
    data: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None


class Postgresql:
    """PostgreSQL: pgbench's tables; `pg_basebackup -D - -Ft -X fetch --checkpoint fast` as Reddwarf runs it
    (over the server's unix socket); restore = `tar -x` into the data directory, then `postgres`."""

    name = "postgresql"

    def __init__(self, version: str) -> None:
        self.version = version
        self.bin = PG_BIN[version]

    def load_tenant(self, host: str, port: int, password: str) -> None:
        load_pgbench(self.bin, port, PGBENCH_SCALE, host=host, password=password)

    def raw_setup(self, work: Path, entry: pwd.struct_passwd) -> RawServer:
        server = RawServer(work=work, data=work / "pg", port=free_port())
        subprocess.run([str(self.bin / "initdb"), "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E",
                        "UTF8", "--locale=C.UTF-8", "--data-checksums"], check=True, capture_output=True, **_as(entry))
        self.raw_start(server, entry)
        load_pgbench(self.bin, server.port, PGBENCH_SCALE, user="postgres", dbname="postgres")
        return server

    def raw_start(self, server: RawServer, entry: pwd.struct_passwd) -> None:
        server.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(server.data), "-p", str(server.port), "-k", str(server.work),
             "-c", "listen_addresses=127.0.0.1"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_as(entry))
        poll(lambda: self.connects(server.port), 120, 0.002)

    def raw_stop(self, server: RawServer) -> None:
        if server.proc is not None:
            stop(server.proc, signal.SIGINT)  # fast shutdown

    def connects(self, port: int) -> bool:
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                 connect_timeout=2) as conn:
                conn.execute("select 1")
            return True
        except psycopg.OperationalError:
            return False

    def raw_backup(self, server: RawServer, out: Path, entry: pwd.struct_passwd) -> None:
        script = ('set -eo pipefail; "$1" -h "$2" -p "$3" -U postgres -D - -Ft -X fetch --checkpoint fast'
                  ' | zstd -1 -T2 -q -o "$4"; sync "$4"')
        subprocess.run(["bash", "-c", script, "bash", str(self.bin / "pg_basebackup"), str(server.work),
                        str(server.port), str(out)], check=True, timeout=STEP_TIMEOUT, **_as(entry))

    def raw_restore(self, artifact: Path, work: Path, entry: pwd.struct_passwd) -> RawServer:
        server = RawServer(work=work, data=work / "pg", port=free_port())
        script = 'set -eo pipefail; mkdir -m 0700 -- "$2"; zstd -dc -q -- "$1" | tar -x -f - -C "$2"; sync -f "$2"'
        subprocess.run(["bash", "-c", script, "bash", str(artifact), str(server.data)], check=True,
                       timeout=STEP_TIMEOUT, **_as(entry))
        self.raw_start(server, entry)
        return server


class Mariadb:
    """MariaDB: one InnoDB table of ~1 GB (`INNODB_ROWS` rows of ~150 bytes, pgbench_accounts-like), filled by
    INSERT ... SELECT from the Sequence engine's `seq_1_to_N`; `mariadb-backup --backup --stream=xbstream` as
    Reddwarf runs it (over the unix socket, as the server's OS user); restore = `mbstream -x`, `--prepare`,
    `--move-back`, then `mariadbd`."""

    name = "mariadb"

    def __init__(self, version: str) -> None:
        self.version = version

    def load_tenant(self, host: str, port: int, password: str) -> None:
        load_innodb(pymysql.connect(host=host, port=port, user="app", password=password, database="app",
                                    autocommit=True, read_timeout=LOAD_TIMEOUT), INNODB_ROWS)

    def raw_setup(self, work: Path, entry: pwd.struct_passwd) -> RawServer:
        server = RawServer(work=work, data=work / "db", port=free_port())
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={server.data}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"], check=True,
                       capture_output=True, **_as(entry))
        self.raw_start(server, entry)
        conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="", autocommit=True,
                               read_timeout=LOAD_TIMEOUT)
        with conn.cursor() as cur:
            cur.execute("create database app")
        conn.select_db("app")
        load_innodb(conn, INNODB_ROWS)
        return server

    def raw_start(self, server: RawServer, entry: pwd.struct_passwd) -> None:
        server.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={server.data}", f"--port={server.port}",
             "--bind-address=127.0.0.1", f"--socket={server.work / 'my.sock'}", f"--pid-file={server.work / 'my.pid'}"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_as(entry))
        poll(lambda: self.connects(server.port), 300, 0.002)

    def raw_stop(self, server: RawServer) -> None:
        if server.proc is not None:
            stop(server.proc)

    def connects(self, port: int) -> bool:
        try:
            pymysql.connect(host="127.0.0.1", port=port, user="root", password="", connect_timeout=2).close()
            return True
        except pymysql.err.OperationalError:
            return False

    def raw_backup(self, server: RawServer, out: Path, entry: pwd.struct_passwd) -> None:
        script = ('set -eo pipefail; t=$(mktemp -d -p "$1"); mariadb-backup --no-defaults --backup --stream=xbstream'
                  ' --user=root --socket="$1/my.sock" --datadir="$2" --target-dir="$t/target"'
                  ' --extra-lsndir="$t/lsn" --tmpdir="$t" 2>"$t/log" | zstd -1 -T2 -q -o "$3"; sync "$3";'
                  ' rm -rf -- "$t"')
        subprocess.run(["bash", "-c", script, "bash", str(server.work), str(server.data), str(out)], check=True,
                       timeout=STEP_TIMEOUT, **_as(entry))

    def raw_restore(self, artifact: Path, work: Path, entry: pwd.struct_passwd) -> RawServer:
        server = RawServer(work=work, data=work / "db", port=free_port())
        script = ('set -eo pipefail; s="$2/stage"; mkdir -m 0700 -- "$s" "$3";'
                  ' zstd -dc -q -- "$1" | mbstream -x -C "$s";'
                  ' mariadb-backup --no-defaults --prepare --target-dir="$s" --tmpdir="$2" 2>/dev/null;'
                  ' mariadb-backup --no-defaults --move-back --target-dir="$s" --datadir="$3" 2>/dev/null;'
                  ' rm -rf -- "$s"; sync -f "$3"')
        subprocess.run(["bash", "-c", script, "bash", str(artifact), str(work), str(server.data)], check=True,
                       timeout=STEP_TIMEOUT, **_as(entry))
        self.raw_start(server, entry)
        return server


class Redis:
    """Redis: `REDIS_KEYS` keys of `REDIS_VALUE` bytes (hex text: zstd halves it, as it does a table), set in
    pipelines; the raw backup does what Reddwarf's does (`ACL SAVE`, `BGSAVE` waited for, then `tar` of
    dump.rdb and the ACL file); restore = `tar -x`, then `redis-server` until PING answers (the keyspace is
    loaded: Redis answers LOADING until then)."""

    name = "redis"

    def __init__(self, version: str) -> None:
        self.version = version

    def load_tenant(self, host: str, port: int, password: str) -> None:
        load_redis(redis.Redis(host=host, port=port, username="app", password=password, socket_timeout=60),
                   REDIS_KEYS, REDIS_VALUE)

    def raw_setup(self, work: Path, entry: pwd.struct_passwd) -> RawServer:
        server = RawServer(work=work, data=work, port=free_port())
        (work / "users.acl").touch(mode=0o600)
        os.chown(work / "users.acl", entry.pw_uid, entry.pw_gid)
        self.raw_start(server, entry)
        load_redis(self._client(server.port), REDIS_KEYS, REDIS_VALUE)
        return server

    def raw_start(self, server: RawServer, entry: pwd.struct_passwd) -> None:
        server.proc = subprocess.Popen(
            ["redis-server", "--port", str(server.port), "--bind", "127.0.0.1", "--dir", str(server.data),
             "--dbfilename", "dump.rdb", "--aclfile", str(server.data / "users.acl"), "--save", "",
             "--appendonly", "no"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_as(entry))
        poll(lambda: self.connects(server.port), 300, 0.002)

    def raw_stop(self, server: RawServer) -> None:
        if server.proc is not None:
            stop(server.proc)

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)

    def connects(self, port: int) -> bool:
        client = self._client(port)
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()

    def raw_backup(self, server: RawServer, out: Path, entry: pwd.struct_passwd) -> None:
        client = self._client(server.port)
        try:
            client.acl_save()
            before = client.lastsave()
            client.bgsave()
            poll(lambda: self._saved(client, before), STEP_TIMEOUT, 0.01)
        finally:
            client.close()
        script = 'set -eo pipefail; tar -c -f - -C "$1" dump.rdb users.acl | zstd -1 -T2 -q -o "$2"; sync "$2"'
        subprocess.run(["bash", "-c", script, "bash", str(server.data), str(out)], check=True, timeout=STEP_TIMEOUT,
                       **_as(entry))

    def _saved(self, client: redis.Redis, before: Any) -> bool:
        info: dict[str, Any] = client.info("persistence")
        return bool(info["rdb_bgsave_in_progress"] == 0 and info["rdb_last_bgsave_status"] == "ok"
                    and client.lastsave() != before)

    def raw_restore(self, artifact: Path, work: Path, entry: pwd.struct_passwd) -> RawServer:
        server = RawServer(work=work, data=work, port=free_port())
        script = 'set -eo pipefail; zstd -dc -q -- "$1" | tar -x -f - -C "$2"; sync -f "$2"'
        subprocess.run(["bash", "-c", script, "bash", str(artifact), str(work)], check=True, timeout=STEP_TIMEOUT,
                       **_as(entry))
        self.raw_start(server, entry)
        return server


Engine = Postgresql | Mariadb | Redis


def engine_for(spec: str) -> Engine:
    name, _, version = spec.partition(":")
    kinds: dict[str, type[Postgresql] | type[Mariadb] | type[Redis]] = {
        "postgresql": Postgresql, "mariadb": Mariadb, "redis": Redis,
    }
    if name not in kinds or not version:
        raise SystemExit(f"unknown engine {spec!r}: one of {', '.join(ENGINES)}")
    return kinds[name](version)


# --- Reddwarf ---------------------------------------------------------------------------------------------

def _backup_done(client: httpx.Client, backup_id: str) -> dict[str, Any] | None:
    view: dict[str, Any] = client.get(f"/backups/{backup_id}").json()["backup"]
    if view["status"] == "FAILED":
        raise RuntimeError(f"backup {backup_id} failed: {view.get('fault')}")
    return view if view["status"] == "COMPLETED" else None


def create(client: httpx.Client, engine: Engine, name: str, extra: dict[str, Any]) -> str:
    return create_instance(client, (engine.name, engine.version), name, FLAVOR, VOLUME_GB, extra)


def reddwarf_backup(client: httpx.Client, instance_id: str, name: str) -> tuple[float, str, int]:
    """Seconds from POST /backups to COMPLETED in the API, the backup's id and its uncompressed bytes."""
    poll(lambda: instance_in(client, instance_id, "ACTIVE"), STEP_TIMEOUT)
    started = time.monotonic()
    response = client.post("/backups", json={"backup": {"name": name, "instance": instance_id}})
    response.raise_for_status()
    backup_id = str(response.json()["backup"]["id"])
    view = poll(lambda: _backup_done(client, backup_id), STEP_TIMEOUT, 0.05)
    elapsed = time.monotonic() - started
    return elapsed, backup_id, round(float(view["uncompressed_size"]) * GIB)


def reddwarf_restore(client: httpx.Client, engine: Engine, backup_id: str, name: str) -> tuple[float, str]:
    """Seconds from POST /instances with the restore point to ACTIVE, and the new instance's id."""
    started = time.monotonic()
    instance_id = create(client, engine, name, {"restorePoint": {"backupRef": backup_id}})
    poll(lambda: instance_in(client, instance_id, "ACTIVE"), STEP_TIMEOUT, 0.05)
    return time.monotonic() - started, instance_id


def delete_backup(client: httpx.Client, backup_id: str) -> None:
    client.delete(f"/backups/{backup_id}")
    poll(lambda: client.get(f"/backups/{backup_id}").status_code == 404, STEP_TIMEOUT, 0.1)


# --- one engine -------------------------------------------------------------------------------------------

@dataclass
class Timings:
    raw_backup_s: list[float] = field(default_factory=list)
    raw_bytes: list[int] = field(default_factory=list)
    rd_backup_s: list[float] = field(default_factory=list)
    rd_bytes: list[int] = field(default_factory=list)
    raw_restore_s: list[float] = field(default_factory=list)
    rd_restore_s: list[float] = field(default_factory=list)


def bench_engine(client: httpx.Client, engine: Engine, runs: int, root: Path, entry: pwd.struct_passwd) -> Timings:
    key = f"{engine.name}-{engine.version}"
    password = secrets.token_urlsafe(16)
    timings = Timings()
    source = create(client, engine, f"bench-{key}", tenant_body(engine.name, password))
    raw: RawServer | None = None
    try:
        view = poll(lambda: instance_in(client, source, "ACTIVE"), STEP_TIMEOUT, 0.1)
        began = time.monotonic()
        engine.load_tenant(view["addresses"][0]["address"], int(view["port"]), password)
        print(f"{key}: loaded the instance in {time.monotonic() - began:.1f}s", file=sys.stderr)
        began = time.monotonic()
        raw = engine.raw_setup(owned_dir(root / f"raw-{key}", entry), entry)
        print(f"{key}: loaded the raw server in {time.monotonic() - began:.1f}s", file=sys.stderr)
        artifacts = owned_dir(root / f"raw-{key}-backups", entry)
        for n in range(runs + 1):  # round 0: the untimed warm-up
            artifact = artifacts / f"{n}.zst"
            began = time.monotonic()
            engine.raw_backup(raw, artifact, entry)
            raw_backup = time.monotonic() - began
            rd_backup, backup_id, rd_bytes = reddwarf_backup(client, source, f"bench-{key}-{n}")
            if n == 0:
                artifact.unlink()
                delete_backup(client, backup_id)
                continue
            began = time.monotonic()
            restored = engine.raw_restore(artifact, owned_dir(root / f"raw-{key}-restore-{n}", entry), entry)
            raw_restore = time.monotonic() - began
            engine.raw_stop(restored)
            shutil.rmtree(restored.work)
            rd_restore, copy = reddwarf_restore(client, engine, backup_id, f"bench-{key}-r{n}")
            timings.raw_backup_s.append(raw_backup)
            timings.raw_bytes.append(decompressed_bytes(artifact))
            timings.rd_backup_s.append(rd_backup)
            timings.rd_bytes.append(rd_bytes)
            timings.raw_restore_s.append(raw_restore)
            timings.rd_restore_s.append(rd_restore)
            print(f"{key} run {n}: backup raw {raw_backup:.2f}s Reddwarf {rd_backup:.2f}s; "
                  f"restore raw {raw_restore:.2f}s Reddwarf {rd_restore:.2f}s", file=sys.stderr)
            delete_instance(client, copy)
            delete_backup(client, backup_id)
            artifact.unlink()
    finally:
        if raw is not None:
            engine.raw_stop(raw)
        delete_instance(client, source)
    return timings


def summary(key: str, t: Timings) -> dict[str, Any]:
    raw_s, rd_s = statistics.median(t.raw_backup_s), statistics.median(t.rd_backup_s)
    raw_mbps = statistics.median(b / MB / s for b, s in zip(t.raw_bytes, t.raw_backup_s, strict=True))
    rd_mbps = statistics.median(b / MB / s for b, s in zip(t.rd_bytes, t.rd_backup_s, strict=True))
    raw_r, rd_r = statistics.median(t.raw_restore_s), statistics.median(t.rd_restore_s)
    row: dict[str, Any] = {
        "runs": len(t.raw_backup_s),
        "raw_mb": round(statistics.median(t.raw_bytes) / MB, 1),
        "reddwarf_mb": round(statistics.median(t.rd_bytes) / MB, 1),
        "backup_raw_s": round(raw_s, 2), "backup_raw_mbps": round(raw_mbps, 1),
        "backup_reddwarf_s": round(rd_s, 2), "backup_reddwarf_mbps": round(rd_mbps, 1),
        # Paired: each round's ratio, then their median (a drift of the machine's speed moves both sides of
        # a round alike); the ratio of the medians beside it.
        "backup_throughput_ratio": round(statistics.median(
            (rb / rs) / (wb / ws) for rb, rs, wb, ws in zip(t.rd_bytes, t.rd_backup_s, t.raw_bytes, t.raw_backup_s,
                                                           strict=True)), 2),
        "backup_ratio_of_medians": round(rd_mbps / raw_mbps, 2),
        "restore_raw_s": round(raw_r, 2), "restore_reddwarf_s": round(rd_r, 2),
        "restore_time_ratio": round(statistics.median(
            r / w for r, w in zip(t.rd_restore_s, t.raw_restore_s, strict=True)), 2),
        "restore_ratio_of_medians": round(rd_r / raw_r, 2),
        "each": {name: [round(v, 3) for v in getattr(t, name)] for name in
                 ("raw_backup_s", "rd_backup_s", "raw_restore_s", "rd_restore_s")},
    }
    print(f"{key:14s} {row['runs']} runs | backup raw {raw_s:.2f}s {raw_mbps:.0f} MB/s, Reddwarf {rd_s:.2f}s "
          f"{rd_mbps:.0f} MB/s, ratio {row['backup_throughput_ratio']:.2f} | restore raw {raw_r:.2f}s, "
          f"Reddwarf {rd_r:.2f}s, ratio {row['restore_time_ratio']:.2f}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engine", action="append", help="ENGINE:VERSION (repeatable); default: all")
    args = parser.parse_args()
    engines = [engine_for(spec) for spec in (args.engine or ENGINES)]
    SCRATCH.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = SCRATCH / f"backup-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    plane = Plane(root, ADDRESS_POOL, USER_PREFIX)
    results: dict[str, Timings] = {}
    try:
        entry = raw_user()
        client = plane.start()
        for engine in engines:
            results[f"{engine.name}-{engine.version}"] = bench_engine(client, engine, args.runs, root, entry)
    finally:
        plane.stop()
        sweep(root, USER_PREFIX, (RAW_USER,))
        shutil.rmtree(root, ignore_errors=True)
    figures: dict[str, Any] = {"benchmark": "backup", "runs": args.runs, "engines": {}}
    for key, timings in results.items():
        figures["engines"][key] = summary(key, timings)
    print("targets: backup throughput ratio (Reddwarf / raw) >= 0.9; restore time ratio (Reddwarf / raw) <= 1.2")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

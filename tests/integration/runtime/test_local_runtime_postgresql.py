"""The local runtime runs a real PostgreSQL 15, built by hand here (the engine package does this for real)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from local_runtime_support import Instances

from reddwarf.domain.workload import CommandSpec, FileSpec, Placement, Resources, WorkloadSpec

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RESOURCES = Resources(memory_mb=256, vcpus=1, volume_gb=1)
PASSWORD = "s3cret-admin-password"

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.slow,
    pytest.mark.skipif(not (PG_BIN / "postgres").exists(), reason="PostgreSQL 15 is not installed"),
]


def postgres_workload(placement: Placement) -> WorkloadSpec:
    pwfile = f"{placement.config_dir}/pwfile"
    return WorkloadSpec(
        instance_id=placement.instance_id,
        init=(
            CommandSpec(
                argv=(
                    str(PG_BIN / "initdb"),
                    "-D",
                    placement.data_dir,
                    "-U",
                    "rdadmin",
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--data-checksums",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ),
                timeout=120.0,
            ),
        ),
        init_files=(FileSpec(path=pwfile, content=PASSWORD + "\n", secret=True),),
        server=CommandSpec(
            argv=(
                str(PG_BIN / "postgres"),
                "-D",
                placement.data_dir,
                "-c",
                f"listen_addresses={placement.address}",
                "-p",
                str(placement.port),
                "-c",
                f"unix_socket_directories={placement.socket_dir}",
                "-c",
                "shared_buffers=32MB",
            )
        ),
        resources=RESOURCES,
        stop_signal=2,  # SIGINT: fast shutdown
        stop_timeout=30.0,
    )


def query(placement: Placement, sql: str) -> object:
    with psycopg.connect(
        host=placement.address, port=placement.port, user="rdadmin", password=PASSWORD, dbname="postgres",
        connect_timeout=2,
    ) as conn:  # fmt: skip
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


def wait_for_query(placement: Placement, sql: str, timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return query(placement, sql)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_postgresql_initialises_runs_as_its_user_stops_and_restarts(instances: Instances, port: int) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, 5432 if runtime.bindable("127.0.77.1", 5432) else port)
    spec = postgres_workload(placement)
    runtime.initialise(placement, spec)
    assert not Path(placement.config_dir, "pwfile").exists()
    runtime.start(placement, spec)

    assert wait_for_query(placement, "select current_user") == "rdadmin"
    assert query(placement, "show data_checksums") == "on"
    assert query(placement, "show unix_socket_directories") == placement.socket_dir
    assert len(placement.socket_dir + f"/.s.PGSQL.{placement.port}") < 107
    seen = runtime.observe(placement)
    assert seen.running and seen.volume_used_bytes is not None and seen.volume_used_bytes > 10 * 1024 * 1024
    owner = int(Path(f"/proc/{seen.pid}/status").read_text().split("Uid:")[1].split()[0])
    import pwd

    assert pwd.getpwuid(owner).pw_name == placement.os_user

    runtime.stop(placement, spec)
    assert not runtime.observe(placement).running
    runtime.initialise(placement, spec)  # never twice: the data survives
    runtime.start(placement, spec)
    assert wait_for_query(placement, "select count(*) from pg_database") == 3
    runtime.destroy(placement)
    assert not runtime.observe(placement).running

"""A snapshot of a running PostgreSQL 15 under a write load, and a branch of it: the branch starts as its own
OS user on its own address with every write committed before the snapshot and none that was never made;
writes on either side never reach the other; a source whose tenant planted a symlink leading off its volume
is refused a branch (the copy's server would follow it); the branch outlives its source."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from local_runtime_support import Instances
from test_local_runtime_postgresql import PASSWORD, PG_BIN, RESOURCES, postgres_workload, query, wait_for_query
from tests.support.server import wait_for

from reddwarf.domain.errors import PermanentError
from reddwarf.domain.workload import CommandSpec, Placement, WorkloadSpec

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.skipif(not (PG_BIN / "postgres").exists(), reason="PostgreSQL 15 is not installed"),
]


class Writer:
    """Inserts one row per transaction until stopped; `committed` holds the ids whose commit returned."""

    def __init__(self, placement: Placement) -> None:
        self.placement = placement
        self.committed: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with psycopg.connect(host=self.placement.address, port=self.placement.port, user="rdadmin",
                             password=PASSWORD, dbname="postgres", autocommit=True) as conn:
            while not self.stop.is_set():
                row = conn.execute("insert into t (v) values (1) returning id").fetchone()
                assert row is not None
                self.committed.append(int(row[0]))


def _run(placement: Placement, sql: str) -> None:
    with psycopg.connect(host=placement.address, port=placement.port, user="rdadmin", password=PASSWORD,
                         dbname="postgres", connect_timeout=5, autocommit=True) as conn:
        conn.execute(sql)


def _ids(placement: Placement) -> set[int]:
    with psycopg.connect(host=placement.address, port=placement.port, user="rdadmin", password=PASSWORD,
                         dbname="postgres", connect_timeout=5) as conn:
        return {int(row[0]) for row in conn.execute("select id from t").fetchall()}


def test_a_branch_of_a_server_under_writes_is_consistent_independent_and_its_own(
    instances: Instances, port: int
) -> None:
    runtime = instances.runtime(use_cow_pool="true", pool_gb=4)
    source = instances.prepare(runtime, RESOURCES, port)
    runtime.initialise(source, postgres_workload(source))
    runtime.start(source, postgres_workload(source))
    wait_for_query(source, "select 1")
    _run(source, "create table t (id bigserial primary key, v int not null)")
    # A tenant with code execution as its OS user plants links in its data directory: one to a host file,
    # one climbing out of the volume, one to a file of its own (harmless: it stays on the volume).
    victim = instances.state_dir.parent / "host-file"
    victim.write_text("root's\n")
    os.symlink(victim, Path(source.data_dir) / "evil-link")
    os.symlink("../../../../host-file", Path(source.data_dir) / "climbing-link")
    os.symlink("PG_VERSION", Path(source.data_dir) / "own-link")
    _plant_deep_link(Path(source.data_dir) / "deep", victim)
    pool = instances.state_dir / "pool"
    # Each refusal names one of them (in the order find meets them); each is refused until removed.
    remaining = {"evil-link": Path.unlink, "climbing-link": Path.unlink, "deep/": shutil.rmtree}
    while remaining:
        planted = str(uuid.uuid4())
        runtime.snapshot(source, planted)
        refused = instances.place(runtime, port)
        with pytest.raises(PermanentError, match="symbolic links that lead outside") as caught:
            runtime.branch(refused, RESOURCES, planted, WorkloadSpec(instance_id=refused.instance_id, init=(),
                           server=postgres_workload(refused).server, resources=RESOURCES))
        named = [name for name in remaining if f"'data/{name}" in str(caught.value)]
        assert len(named) == 1 and len(str(caught.value)) < 500, caught.value
        assert not (pool / "volumes" / f"{refused.instance_id}.img").exists()  # the refused copy is not kept
        assert not any((pool / "work").iterdir())
        runtime.destroy(refused)
        runtime.remove_snapshot(planted)
        remaining.pop(named[0])(Path(source.data_dir) / named[0].rstrip("/"))

    writer = Writer(source)
    try:
        wait_for(lambda: len(writer.committed) >= 50, 30, "the writer to commit rows")
        _run(source, "checkpoint")
        before = set(writer.committed)
        snapshot = str(uuid.uuid4())
        runtime.snapshot(source, snapshot)
        wait_for(lambda: len(writer.committed) >= len(before) + 20, 30, "writes to go on after the snapshot")
    finally:
        writer.stop.set()
        writer.thread.join(10)

    branch = instances.place(runtime, port)
    fix_ups = (CommandSpec(argv=("/bin/rm", "-f", f"{branch.data_dir}/postmaster.pid")),)
    runtime.branch(branch, RESOURCES, snapshot, WorkloadSpec(
        instance_id=branch.instance_id, init=fix_ups, server=postgres_workload(branch).server, resources=RESOURCES))
    runtime.start(branch, postgres_workload(branch))
    wait_for_query(branch, "select 1")

    copied = _ids(branch)
    assert before <= copied <= set(writer.committed)  # nothing lost before the snapshot, nothing invented
    owner = Path(branch.data_dir).stat().st_uid
    assert owner != Path(source.data_dir).stat().st_uid
    assert (Path(branch.data_dir) / "PG_VERSION").stat().st_uid == owner
    assert os.lstat(Path(branch.data_dir) / "own-link").st_uid == owner  # re-owned itself, never its target
    assert (Path(branch.data_dir) / "own-link").read_text() == (Path(branch.data_dir) / "PG_VERSION").read_text()

    _run(branch, "insert into t (v) values (-1)")
    _run(source, "insert into t (v) values (-2)")
    assert query(source, "select count(*) from t where v = -1") == 0
    assert query(branch, "select count(*) from t where v = -2") == 0

    runtime.destroy(source)
    assert query(branch, "select count(*) from t") == len(copied) + 1
    runtime.remove_snapshot(snapshot)
    assert not (instances.state_dir / "pool" / "snapshots" / f"{snapshot}.img").exists()


def _plant_deep_link(top: Path, target: Path) -> None:
    """A link to `target` at the bottom of directories whose path is longer than one system call takes."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(24):  # 24 x 201 bytes: past PATH_MAX (4096)
            os.mkdir("d" * 200, dir_fd=fd)
            deeper = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        os.symlink(target, "hidden-link", dir_fd=fd)
    finally:
        os.close(fd)

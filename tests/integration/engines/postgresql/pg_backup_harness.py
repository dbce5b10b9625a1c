"""What the backup tests do with real PostgreSQL instances on the local runtime, as the workflows will:
create an instance (prepare, initdb, start, bootstrap), run a backup's tool and keep its raw stream in a file,
feed files back to a restore's extract tools, run its init commands as the new instance's init, start it and
adopt it. Also: a watch over every process's argv for secrets while something runs.

Instances come from the local runtime tests' `Instances` (OS users, volumes, cgroups, clean-up), on this
module's own address pool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from tests.integration.runtime.local_runtime_support import Instances

from reddwarf.domain.backup import BackupResult, ChainLink, ParentBackup
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, Placement, Resources, WorkloadSpec
from reddwarf.engines.postgresql import PostgresqlEngine
from reddwarf.engines.postgresql.backup import PostgresqlBackupRun
from reddwarf.runtimes.local import LocalRuntime

ADDRESS_POOL = "127.0.84.0/24"
PORT = 5432
READY_DEADLINE = 60.0
TOOL_TIMEOUT = 600.0
CHUNK = 1 << 20


@dataclass
class Instance:
    """One instance on the local runtime and what the control plane knows of it."""

    runtime: LocalRuntime
    placement: Placement
    workload: WorkloadSpec
    admin: Secret
    version: DatastoreVersion


@dataclass
class Taken:
    """A backup as the tests keep it: the raw stream in a file and what the engine recorded."""

    backup_id: str
    strategy: str
    path: Path
    raw_bytes: int
    result: BackupResult
    seconds: float

    def link(self) -> ChainLink:
        return ChainLink(self.backup_id, self.strategy, self.result.metadata, self.result.side_files)

    def parent(self) -> ParentBackup:
        return ParentBackup(self.backup_id, self.result.metadata, self.result.side_files)


class Fleet:
    """Instances of one PostgreSQL version on one local runtime, for one test."""

    def __init__(self, instances: Instances, engine: PostgresqlEngine, version: DatastoreVersion, files: Path) -> None:
        self.instances = instances
        self.engine = engine
        self.version = version
        self.files = files
        self.runtime = instances.runtime(address_pool=ADDRESS_POOL)

    def create(self, spec: InstanceSpec, flavor: Flavor, *, summarize_wal: bool | None = None) -> Instance:
        """A new instance built as the create workflow does; `summarize_wal=False` renders the configuration
        an instance created before incremental backups existed had."""
        placement = self.instances.prepare(self.runtime, _resources(spec, flavor), PORT)
        admin = Secret(secrets.token_urlsafe(24))
        workload = self.engine.workload(spec, self.version, flavor, placement, admin)
        if summarize_wal is False:
            workload = dataclasses.replace(
                workload,
                files=tuple(
                    dataclasses.replace(f, content=f.content.replace("summarize_wal = on\n", ""))
                    for f in workload.files
                ),
            )
        self.runtime.initialise(placement, workload)
        instance = Instance(self.runtime, placement, workload, admin, self.version)
        self.start(instance)
        self.engine.bootstrap(spec, placement, admin)
        return instance

    def start(self, instance: Instance) -> None:
        self.runtime.start(instance.placement, instance.workload)
        wait_for(lambda: self.engine.probe(instance.placement, self.engine.admin_user, instance.admin),
                 f"instance {instance.placement.instance_id} to answer")  # fmt: skip

    def backup(self, instance: Instance, parent: Taken | None = None) -> Taken:
        """Run the backup's tool, every byte of its stdout through `observe()` and into a file."""
        backups = self.engine.backups(self.version)
        strategies = backups.strategies()
        strategy = strategies.full if parent is None else strategies.incremental
        assert strategy is not None
        run = backups.backup(instance.placement, instance.admin, None if parent is None else parent.parent())
        assert isinstance(run, PostgresqlBackupRun)
        backup_id = f"b-{secrets.token_hex(4)}"
        path = self.files / f"{backup_id}.tar"
        started = time.monotonic()
        run.prepare()
        with self.runtime.open_tool(instance.placement, run.tool) as tool, path.open("wb") as out:
            while piece := tool.stdout.read(CHUNK):
                run.observe(piece)
                out.write(piece)
            collected = tool.finish(TOOL_TIMEOUT)
        result = run.finish(collected)
        return Taken(backup_id, strategy, path, run.raw_bytes, result, time.monotonic() - started)

    def restore(
        self, spec: InstanceSpec, flavor: Flavor, chain: Sequence[Taken], source_admin: Secret, *,
        crash_before_marker: bool = False,
    ) -> Instance:
        """A new instance from `chain` as the restore workflow does: extract each link, init, start, adopt.

        `crash_before_marker`: the first init runs every command but the last, then fails (as a worker killed
        before the init marker), and init is run again, alone."""
        placement = self.instances.prepare(self.runtime, _resources(spec, flavor), PORT)
        plan = self.engine.backups(self.version).restore(placement, [taken.link() for taken in chain])
        for tool_spec, taken in zip(plan.extract, chain, strict=True):
            with self.runtime.open_tool(placement, tool_spec) as tool, taken.path.open("rb") as source:
                assert tool.stdin is not None
                while piece := source.read(CHUNK):
                    tool.stdin.write(piece)
                tool.finish(TOOL_TIMEOUT)
        admin = Secret(secrets.token_urlsafe(24))
        workload = self.engine.workload(spec, self.version, flavor, placement, admin)
        workload = dataclasses.replace(workload, init=plan.init, init_files=())
        if crash_before_marker:
            crashing = dataclasses.replace(workload, init=(*plan.init[:-1], CommandSpec(("false",))))
            with contextlib.suppress(PermanentError):
                self.runtime.initialise(placement, crashing)
            assert any(Path(placement.data_dir).iterdir()), "the first init left nothing to wipe"
        self.runtime.initialise(placement, workload)
        self.runtime.start(placement, workload)
        wait_for(lambda: self.engine.ping(placement), f"restored instance {placement.instance_id} to listen")
        self.engine.backups(self.version).adopt(placement, source_admin, admin)
        instance = Instance(self.runtime, placement, workload, admin, self.version)
        wait_for(lambda: self.engine.probe(placement, self.engine.admin_user, admin), "the new admin to log in")
        return instance


def _resources(spec: InstanceSpec, flavor: Flavor) -> Resources:
    return Resources(memory_mb=flavor.ram_mb, vcpus=flavor.vcpus, volume_gb=spec.volume_size_gb)


def wait_for(condition: Any, what: str, deadline: float = READY_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def admin_sql(instance: Instance, query: str, dbname: str = "postgres", user: str = "reddwarf_admin") -> list[Any]:
    """Rows of `query` run as the admin over the instance's unix socket (its server checked to be its own)."""
    with psycopg.connect(
        host=instance.placement.socket_dir, port=instance.placement.port, user=user,
        password=instance.admin.reveal(), dbname=dbname, requirepeer=instance.placement.os_user,
        connect_timeout=5, autocommit=True, sslmode="disable",
    ) as conn:  # fmt: skip
        cursor = conn.execute(query)
        return cursor.fetchall() if cursor.description else []


def tenant_sql(instance: Instance, user: str, password: str, dbname: str, query: str) -> list[Any]:
    """Rows of `query` run by a tenant over TCP to the instance's endpoint."""
    with psycopg.connect(
        host=instance.placement.address, port=instance.placement.port, user=user, password=password,
        dbname=dbname, connect_timeout=5, autocommit=True, sslmode="disable",
    ) as conn:  # fmt: skip
        cursor = conn.execute(query)
        return cursor.fetchall() if cursor.description else []


@dataclass
class ArgvWatch:
    """Scans every process's /proc/<pid>/cmdline over and over while it is open; `hits` are the command lines
    that held one of `secrets`, `seen` how many scanned command lines named each of `tools`."""

    secrets: Sequence[str]
    tools: Sequence[str]
    hits: list[str] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    scans: int = 0

    @contextlib.contextmanager
    def watching(self) -> Iterator[ArgvWatch]:
        stop = threading.Event()
        thread = threading.Thread(target=self._scan_until, args=(stop,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(10)

    def _scan_until(self, stop: threading.Event) -> None:
        wanted = [s.encode() for s in self.secrets]
        while not stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    argv = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if any(secret in argv for secret in wanted):
                    self.hits.append(argv.replace(b"\0", b" ").decode(errors="replace"))
                for tool in self.tools:
                    if tool.encode() in argv:
                        self.seen[tool] = self.seen.get(tool, 0) + 1
            self.scans += 1

"""Real servers on the local runtime for the engines' backup tests: create, back up into a file, restore.

What the control plane's backup and restore workflows do, minimally and without storage: a backup's raw
stream goes from the tool's stdout into a file (`take_backup`); a restore feeds those files, in chain order,
to the plan's extract tools, then initialises the new instance with the plan's init commands, starts it,
waits for the source's admin to answer and adopts it (`EngineInstances.restore`). `ArgvWatch` reads every
process's command line meanwhile, looking for secrets.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reddwarf.domain.backup import BackupResult, ChainLink, ParentBackup
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement, Resources, WorkloadSpec
from reddwarf.engines.base import Engine
from reddwarf.runtimes.local import LocalRuntime
from tests.support.local_instances import Instances
from tests.support.server import wait_for

READY_TIMEOUT = 120.0
TOOL_TIMEOUT = 600.0


@dataclass(frozen=True)
class Running:
    """One instance whose server runs on the local runtime."""

    placement: Placement
    workload: WorkloadSpec
    admin: Secret


@dataclass(frozen=True)
class TakenBackup:
    """A backup's raw stream in a file, and what the engine recorded of it."""

    path: Path
    strategy: str
    result: BackupResult
    backup_id: str = dataclasses.field(default_factory=lambda: secrets.token_hex(4))

    @property
    def raw_bytes(self) -> int:
        return self.path.stat().st_size

    def link(self) -> ChainLink:
        return ChainLink(self.backup_id, self.strategy, self.result.metadata, self.result.side_files)

    def parent(self) -> ParentBackup:
        return ParentBackup(self.backup_id, self.result.metadata, self.result.side_files)


class EngineInstances:
    """Instances of one engine version on one local runtime (torn down by the `Instances` they come from)."""

    def __init__(
        self, instances: Instances, engine: Engine, version: DatastoreVersion, flavor: Flavor, volume_gb: int = 1,
        **runtime_settings: object,
    ) -> None:
        self.instances = instances
        self.runtime: LocalRuntime = instances.runtime(**runtime_settings)
        self.engine = engine
        self.version = version
        self.flavor = flavor
        self.resources = Resources(memory_mb=flavor.ram_mb, vcpus=flavor.vcpus, volume_gb=volume_gb)
        self.started: list[tuple[Placement, WorkloadSpec]] = []

    def _placed(self, spec: InstanceSpec, admin: Secret | None = None) -> tuple[Placement, WorkloadSpec, Secret]:
        placement = self.instances.prepare(self.runtime, self.resources, self.engine.default_port)
        admin = admin or Secret(secrets.token_urlsafe(24))
        workload = self.engine.workload(spec, self.version, self.flavor, placement, admin)
        return placement, workload, admin

    def _start(self, placement: Placement, workload: WorkloadSpec, admin: Secret) -> None:
        self.runtime.start(placement, workload)
        self.started.append((placement, workload))
        wait_for(lambda: self.engine.probe(placement, self.engine.admin_user, admin), READY_TIMEOUT,
                 f"instance {placement.instance_id} to answer its admin")

    def create(self, spec: InstanceSpec) -> Running:
        placement, workload, admin = self._placed(spec)
        self.runtime.initialise(placement, workload)
        self._start(placement, workload, admin)
        self.engine.bootstrap(spec, placement, admin)
        return Running(placement, workload, admin)

    def restore(
        self, spec: InstanceSpec, chain: Sequence[TakenBackup], source_admin: Secret, admin: Secret | None = None
    ) -> Running:
        """A new instance from `chain` (the full backup first), as the restore workflow builds it; `admin` is
        its own admin password (a new one when None)."""
        placement, workload, admin = self._placed(spec, admin)
        backups = self.engine.backups(self.version)
        plan = backups.restore(placement, [taken.link() for taken in chain])
        assert len(plan.extract) == len(chain)
        for taken, tool in zip(chain, plan.extract, strict=True):
            with self.runtime.open_tool(placement, tool) as run, taken.path.open("rb") as source:
                assert run.stdin is not None
                shutil.copyfileobj(source, run.stdin, 1 << 20)
                run.finish(TOOL_TIMEOUT)
        self.runtime.initialise(placement, dataclasses.replace(workload, init=plan.init, init_files=()))
        self.runtime.start(placement, workload)
        self.started.append((placement, workload))
        wait_for(lambda: self.engine.probe(placement, self.engine.admin_user, source_admin), READY_TIMEOUT,
                 f"restored instance {placement.instance_id} to answer its source's admin")
        backups.adopt(placement, source_admin, admin)
        self.engine.bootstrap(spec, placement, admin)
        return Running(placement, workload, admin)

    def branch(self, source: Running, spec: InstanceSpec, admin: Secret | None = None) -> Running:
        """A new instance on a snapshot of `source`'s volume taken while it runs (the runtime needs its
        copy-on-write pool on), made its own as the branch workflow does: quiesce, snapshot, branch with the
        engine's fix-ups, start, adopt. `spec` names no users or databases: they come with the copy."""
        snapshot_id = secrets.token_hex(8)
        snapshots = self.engine.snapshots(self.version)
        with snapshots.quiesced(source.placement, source.admin):
            self.runtime.snapshot(source.placement, snapshot_id, snapshots.carried())
        placement = self.instances.place(self.runtime, self.engine.default_port)
        admin = admin or Secret(secrets.token_urlsafe(24))
        workload = self.engine.workload(spec, self.version, self.flavor, placement, admin)
        fixed = dataclasses.replace(workload, init=snapshots.fix_ups(placement), init_files=())
        self.runtime.branch(placement, self.resources, snapshot_id, fixed)
        self.runtime.remove_snapshot(snapshot_id)
        self.runtime.start(placement, workload)
        self.started.append((placement, workload))
        wait_for(lambda: self.engine.probe(placement, self.engine.admin_user, source.admin), READY_TIMEOUT,
                 f"branch {placement.instance_id} to answer its source's admin")
        self.engine.backups(self.version).adopt(placement, source.admin, admin)
        self.engine.bootstrap(spec, placement, admin)
        return Running(placement, workload, admin)

    def stop_all(self) -> None:
        """Stop every server cleanly (waiting for each to exit) before the instances are destroyed."""
        for placement, workload in reversed(self.started):
            self.runtime.stop(placement, workload)
        self.started.clear()

    def take_backup(self, running: Running, out: Path, parent: TakenBackup | None = None) -> TakenBackup:
        """One backup's raw stream into `out`, every byte passed through `observe` as the workflow does."""
        backups = self.engine.backups(self.version)
        strategies = backups.strategies()
        run = backups.backup(running.placement, running.admin, None if parent is None else parent.parent())
        run.prepare()
        tool = run.tool
        assert tool is not None
        with self.runtime.open_tool(running.placement, tool) as process, out.open("wb") as sink:
            while piece := process.stdout.read(1 << 20):
                run.observe(piece)
                sink.write(piece)
            collected = process.finish(TOOL_TIMEOUT)
        result = run.finish(collected)
        strategy = strategies.full if parent is None else strategies.incremental
        assert strategy is not None
        return TakenBackup(out, strategy, result)


class ArgvWatch:
    """Reads every process's command line (`/proc/*/cmdline`) in a loop, keeping those that hold a secret and
    the programs it saw (to prove the watch overlapped the tools it was meant to catch)."""

    def __init__(self, secrets_: Sequence[str]) -> None:
        self._secrets = [s.encode() for s in secrets_ if s]
        self.leaks: list[str] = []
        self.seen: set[str] = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="argv-watch", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        argv = handle.read()
                except OSError:
                    continue
                if not argv:
                    continue
                self.seen.add(os.path.basename(argv.split(b"\0", 1)[0].decode("utf-8", "replace")))
                for secret in self._secrets:
                    if secret in argv:
                        self.leaks.append(argv.replace(b"\0", b" ").decode("utf-8", "replace"))
            self.rounds += 1
            time.sleep(0.002)

    @contextmanager
    def running(self) -> Iterator[ArgvWatch]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10.0)

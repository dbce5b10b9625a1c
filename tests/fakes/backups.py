"""Fake backups of an engine: a tool that "dumps" fixed bytes and an extract that takes them back, so that the
backup and restore workflows (storage, artifacts, steps, statuses) run without a database server.

`FakeBackups.dumped` is what the fake tool writes to stdout (the `FakeRuntime` plays it); `adopted` records
the credential rotations asked for; `blocker` is what `incremental_blocker` answers; `check_result` what
`check` answers (or raises); `archive_spec` is
where its servers archive (None: nowhere).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reddwarf.domain.backup import (
    ArchivePiece,
    ArchiveSpec,
    BackupResult,
    BackupStrategies,
    ChainLink,
    ParentBackup,
    RestorePlan,
)
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement, ToolSpec
from reddwarf.engines.base import BackupRun, Backups

DUMP = "fake-dump"
EXTRACT = "fake-extract"


@dataclass
class FakeBackupRun:
    parent: ParentBackup | None
    seen: bytearray = field(default_factory=bytearray)
    prepared: bool = False

    @property
    def tool(self) -> ToolSpec:
        return ToolSpec((DUMP,), as_instance=True, description="fake dump")

    def prepare(self) -> None:
        self.prepared = True

    def pieces(self, shipped: Sequence[str]) -> Sequence[ArchivePiece]:
        return ()

    def observe(self, data: bytes) -> None:
        self.seen.extend(data)

    def finish(self, collected: Mapping[str, bytes]) -> BackupResult:
        return BackupResult(
            metadata={"bytes": len(self.seen), "parent": None if self.parent is None else self.parent.backup_id},
            side_files={"label": b"fake label " + bytes(str(len(self.seen)), "ascii")},
        )


@dataclass
class FakeBackups:
    incremental: bool = True
    blocker: str | None = None
    adopted: list[tuple[str, str]] = field(default_factory=list)
    runs: list[FakeBackupRun] = field(default_factory=list)
    archive_spec: ArchiveSpec | None = None
    # What `check` answers, or (an exception) raises; `checked` records the placements it checked.
    check_result: str | Exception = "fake check passed"
    checked: list[str] = field(default_factory=list)
    # Raised by `backup` when set (a backup that fails).
    backup_error: Exception | None = None

    def strategies(self) -> BackupStrategies:
        if self.incremental:
            return BackupStrategies(full="fake_dump", incremental="fake_dump_incremental")
        return BackupStrategies(full="fake_dump", reason="the fake engine has no incrementals")

    def incremental_blocker(self, placement: Placement, admin_password: Secret) -> str | None:
        return self.blocker

    def backup(self, placement: Placement, admin_password: Secret, parent: ParentBackup | None) -> BackupRun:
        if self.backup_error is not None:
            raise self.backup_error
        run = FakeBackupRun(parent)
        self.runs.append(run)
        return run

    def archive(self, placement: Placement) -> ArchiveSpec | None:
        return self.archive_spec

    def restore(self, placement: Placement, chain: Sequence[ChainLink]) -> RestorePlan:
        extract = tuple(
            ToolSpec((EXTRACT, str(index)), stdin=True, description=f"fake extract {index}")
            for index, _ in enumerate(chain)
        )
        return RestorePlan(extract=extract, init=())

    def adopt(self, placement: Placement, old_admin: Secret, new_admin: Secret) -> None:
        self.adopted.append((placement.instance_id, old_admin.reveal()))

    def check(self, placement: Placement, admin_password: Secret, timeout: float) -> str:
        self.checked.append(placement.instance_id)
        if isinstance(self.check_result, Exception):
            raise self.check_result
        return self.check_result


_BACKUPS: Backups = FakeBackups()

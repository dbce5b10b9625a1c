"""PostgreSQL's WAL-based incremental backups (versions without block-level incrementals: 15 and 16).

The incremental is the WAL written since its parent ended, as shipped from the instance's archive
(`wal`, `workflows/reconcilers/archive.py`). `prepare()` checks that the server archives where Reddwarf
ships from (a server started before archiving was pinned must restart first), forces a segment switch so that
everything up to now is in a finished segment, and waits (bounded) until the server has archived it. The
control plane then ships the archive and streams the `pieces()` of the shipped segments (see `wal`) as the
backup. A restore writes each piece at its offset into the restored base's pg_wal (`wal.apply_pieces_script`):
the server's crash recovery from the base's backup_label replays it all.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reddwarf.domain.backup import ArchivePiece, BackupResult, ParentBackup
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement, ToolSpec
from reddwarf.engines.postgresql import admin, wal

STRATEGY = "pg_wal_incremental"
LIVE_TIMEOUT = 5.0
# How long the server may take to archive the segment the backup switched out of.
ARCHIVE_WAIT = 120.0
ARCHIVE_RESTART_REASON = (
    "restart the instance to enable incremental backups (it was started before WAL archiving, which "
    "incremental backups of this PostgreSQL version need, was turned on)"
)


@dataclass(frozen=True, slots=True)
class ArchiveFacts:
    archiving: bool
    system_identifier: str
    timeline: int
    segment_bytes: int


def archive_facts(placement: Placement, admin_user: str, password: Secret) -> ArchiveFacts:
    """Whether the server archives into the instance's own archive directory with Reddwarf's command."""
    where = admin.target(placement, admin_user, password, timeout=LIVE_TIMEOUT)
    with admin.session(where) as conn, admin.refusals("read the server's archive settings"):
        row = conn.execute(
            "SELECT pg_catalog.current_setting('archive_mode'), pg_catalog.current_setting('archive_command'),"
            " (SELECT system_identifier FROM pg_catalog.pg_control_system())::pg_catalog.text,"
            " (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()),"
            " (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size')"
        ).fetchone()
    if row is None:
        raise TemporaryError(f"PostgreSQL at {where.where} answered no settings")
    archiving = row[0] == "on" and row[1] == wal.archive_command(placement)
    return ArchiveFacts(archiving, str(row[2]), int(row[3]), int(row[4]))


class WalIncrementalRun:
    """One WAL-based incremental (`reddwarf.engines.base.BackupRun` without a tool; module docstring)."""

    def __init__(
        self, version: DatastoreVersion, placement: Placement, admin_user: str, admin_password: Secret,
        parent: ParentBackup,
    ) -> None:
        self._version = version
        self._placement = placement
        self._admin_user = admin_user
        self._password = admin_password
        self._parent = parent
        self._facts: ArchiveFacts | None = None
        self._start = 0
        self._end = 0
        self._pieces: list[ArchivePiece] = []
        self.raw_bytes = 0

    @property
    def tool(self) -> ToolSpec | None:
        return None

    def prepare(self) -> None:
        facts = archive_facts(self._placement, self._admin_user, self._password)
        if not facts.archiving:
            raise PermanentError(ARCHIVE_RESTART_REASON)
        parent = self._parent.metadata
        if parent.get("system_identifier") not in (None, facts.system_identifier):
            raise PermanentError(f"parent backup {self._parent.backup_id} is of another PostgreSQL cluster")
        if int(parent.get("timeline", facts.timeline)) != facts.timeline:
            raise PermanentError(
                f"the server changed timeline since parent backup {self._parent.backup_id}: take a full backup"
            )
        self._facts = facts
        self._start = _parent_next(parent, facts.segment_bytes)
        where = admin.target(self._placement, self._admin_user, self._password, timeout=LIVE_TIMEOUT)
        with admin.session(where) as conn, admin.refusals("switch to a new WAL segment"):
            row = conn.execute("SELECT pg_catalog.pg_switch_wal()::pg_catalog.text").fetchone()
            if row is None:
                raise TemporaryError("PostgreSQL answered no switch position")
            self._end = wal.parse_lsn(str(row[0]))
            if self._end > self._start:
                last = wal.segment_name(facts.timeline, (self._end - 1) // facts.segment_bytes, facts.segment_bytes)
                _wait_archived(conn, last)

    def pieces(self, shipped: Sequence[str]) -> Sequence[ArchivePiece]:
        facts = self._facts
        if facts is None:
            raise PermanentError("the WAL-based incremental was not prepared")
        self._pieces = wal.pieces(self._start, self._end, facts.timeline, shipped, facts.segment_bytes)
        return self._pieces

    def observe(self, data: bytes) -> None:
        self.raw_bytes += len(data)

    def finish(self, collected: Mapping[str, bytes]) -> BackupResult:
        facts = self._facts
        if facts is None:
            raise PermanentError("the WAL-based incremental was not prepared")
        metadata: dict[str, Any] = {
            "start_lsn": wal.format_lsn(self._start),
            "end_lsn": wal.format_lsn(self._end),
            "next_lsn": wal.format_lsn(wal.next_segment_start(max(self._end, self._start), facts.segment_bytes)),
            "timeline": facts.timeline,
            "segment_bytes": facts.segment_bytes,
            "segments": [piece.name for piece in self._pieces],
            "version": self._version.number,
            "major": int((self._version.number or self._version.name).split(".", 1)[0]),
            "system_identifier": facts.system_identifier,
            "incremental": True,
            "parent_id": self._parent.backup_id,
        }
        return BackupResult(metadata=metadata)


def _parent_next(parent: Mapping[str, Any], segment_bytes: int) -> int:
    """Where the child's WAL starts: a WAL-based parent says (`next_lsn`); a full one ended with the segment
    switch of its backup's stop, so its WAL goes on at the next segment."""
    if "next_lsn" in parent:
        return wal.parse_lsn(str(parent["next_lsn"]))
    end = parent.get("end_lsn")
    if end is None:
        raise PermanentError("the parent backup records no WAL position")
    return wal.next_segment_start(wal.parse_lsn(str(end)), segment_bytes)


def _wait_archived(conn: Any, segment: str) -> None:
    """Until the server has archived `segment` (its archiver works in segment order), within ARCHIVE_WAIT."""
    deadline = time.monotonic() + ARCHIVE_WAIT
    pause = 0.01
    while True:
        row = conn.execute(
            "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, ''), failed_count"
            " FROM pg_catalog.pg_stat_archiver"
        ).fetchone()
        archived = str(row[0]) if row else ""
        if archived[:24] >= segment and len(archived) >= 24:
            return
        if time.monotonic() >= deadline:
            failed = f" (it last failed on {row[1]})" if row and row[1] else ""
            raise TemporaryError(f"the server has not archived WAL segment {segment} yet{failed}")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)

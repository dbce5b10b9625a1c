"""PostgreSQL's WAL archive, as Reddwarf keeps it: where a server archives, and which pieces of the shipped
segments make a WAL-based incremental backup (PostgreSQL 15, which has no block-level incrementals). Pure.

Every server archives into a directory of its instance's own on its volume (`archive_dir`), with an
`archive_command` pinned on its command line (a tenant's `ALTER SYSTEM` cannot change it): copy to a
`.part` name, fsync, rename, fsync the directory, so that a file with a final name is whole and durable. The
control plane ships each finished file to backup storage and removes it (`workflows/reconcilers/archive.py`).

A WAL-based incremental holds the WAL from where its parent ends to a segment switch it forces: the segments
in between whole, the first from the page holding its start, the last up to the page holding the switch's
end (measured here on PostgreSQL 15: the rest of a switched segment is never read, and a restore writes each
piece at its offset into the base's pg_wal, pads the segment to its full size with zeros, and crash recovery
from the base's backup_label replays through to the switch, no recovery.signal needed). A parent that ended
with a switch (pg_basebackup's stop does one, so does every incremental) hands its child the start of the
next segment: nothing of the switched segment's unused tail is ever copied.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import PurePosixPath

from reddwarf.domain.backup import ArchivePiece, ArchiveSpec
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.workload import Placement

PAGE = 8192
DEFAULT_SEGMENT = 16 << 20
ARCHIVE_DIR_NAME = "wal-archive"
# Finished files of the archive: segments, timeline history files, backup history files.
ARCHIVED_NAMES = r"[0-9A-F]{24}|[0-9A-F]{8}\.history|[0-9A-F]{24}\.[0-9A-F]{8}\.backup"
_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def archive_dir(placement: Placement) -> str:
    return str(PurePosixPath(placement.scratch_dir) / ARCHIVE_DIR_NAME)


def archive_spec(placement: Placement, segment_bytes: int = DEFAULT_SEGMENT) -> ArchiveSpec:
    return ArchiveSpec(directory=archive_dir(placement), pattern=ARCHIVED_NAMES, max_bytes=max(segment_bytes, 1 << 20))


def archive_command(placement: Placement) -> str:
    """The server's archive_command: whole, durable files with final names, in the instance's own directory."""
    target = shlex.quote(archive_dir(placement))
    return (
        f"mkdir -p {target} && cp %p {target}/%f.part && sync {target}/%f.part && "
        f"mv -f {target}/%f.part {target}/%f && sync {target}"
    )


def parse_lsn(text: str) -> int:
    found = _LSN.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(found.group(1), 16) << 32) | int(found.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def segment_name(timeline: int, segno: int, segment_bytes: int = DEFAULT_SEGMENT) -> str:
    per_id = 0x100000000 // segment_bytes
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def next_segment_start(lsn: int, segment_bytes: int = DEFAULT_SEGMENT) -> int:
    """Where WAL goes on after a switch whose record ends at `lsn`: the start of the next segment (`lsn`
    itself when it is on a boundary)."""
    return -(-lsn // segment_bytes) * segment_bytes


def pieces(
    start: int, end: int, timeline: int, shipped: Sequence[str], segment_bytes: int = DEFAULT_SEGMENT
) -> list[ArchivePiece]:
    """The pieces of shipped segments holding WAL `start`..`end` (end exclusive). A segment that was never
    shipped is a PermanentError: the incremental cannot be taken (a full backup can)."""
    if end <= start:
        return []
    available = set(shipped)
    first, last = start // segment_bytes, (end - 1) // segment_bytes
    found: list[ArchivePiece] = []
    for segno in range(first, last + 1):
        name = segment_name(timeline, segno, segment_bytes)
        if name not in available:
            raise PermanentError(
                f"WAL segment {name} was never archived: an incremental backup cannot cover the WAL since its "
                "parent; take a full backup."
            )
        begin = (start % segment_bytes) // PAGE * PAGE if segno == first else 0
        stop = None
        if segno == last:
            stop = min(segment_bytes, -(-((end - 1) % segment_bytes + 1) // PAGE) * PAGE)
        found.append(ArchivePiece(name, begin, stop))
    return found


def apply_pieces_script(staging: Sequence[str], wal_dir: str, segment_bytes: int = DEFAULT_SEGMENT) -> str:
    """A shell script (run as the instance's user) that writes every piece extracted into the `staging`
    directories (members `<segment>.<offset>`, oldest incremental first) at its offset into `wal_dir`, padding
    each segment to its full size."""
    lines = ["set -eu"]
    for directory in staging:
        lines.append(
            f"for piece in {shlex.quote(directory)}/*.*; do "
            '[ -f "$piece" ] || continue; '
            'name=$(basename "$piece"); segment=${name%.*}; offset=${name##*.}; '
            f'dd if="$piece" of={shlex.quote(wal_dir)}/"$segment" bs=1M seek="$offset" oflag=seek_bytes '
            "conv=notrunc status=none; "
            f'truncate -s {segment_bytes} {shlex.quote(wal_dir)}/"$segment"; '
            "done"
        )
    return "\n".join(lines) + "\n"

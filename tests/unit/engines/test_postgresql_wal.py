"""The WAL pieces of a PostgreSQL 15 incremental: LSN and segment arithmetic, page-aligned ends, and a
segment that was never shipped refused by name."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from reddwarf.domain.backup import ArchivePiece
from reddwarf.domain.errors import PermanentError
from reddwarf.engines.postgresql import wal

SEG = 16 << 20
PAGE_END = 8192


def test_lsns_and_segment_names_follow_postgresql() -> None:
    assert wal.parse_lsn("0/4082B70") == 0x4082B70
    assert wal.parse_lsn("1/0") == 1 << 32
    assert wal.format_lsn(0x104082B70) == "1/4082B70"
    assert wal.segment_name(1, 4) == "000000010000000000000004"
    assert wal.segment_name(2, 256) == "000000020000000100000000"  # 256 segments of 16 MiB per log id
    assert wal.next_segment_start(0x4082B70) == 0x5000000
    assert wal.next_segment_start(0x5000000) == 0x5000000
    with pytest.raises(ValueError, match="not an LSN"):
        wal.parse_lsn("4082B70")


def test_a_range_inside_one_segment_is_one_piece_to_the_page_after_its_end() -> None:
    shipped = ["000000010000000000000004"]
    assert wal.pieces(0x4000000, 0x4082B70, 1, shipped) == [ArchivePiece("000000010000000000000004", 0, 0x84000)]


def test_a_range_over_segments_takes_the_middle_ones_whole() -> None:
    shipped = [wal.segment_name(1, n) for n in range(3, 7)]
    found = wal.pieces(0x3002000 + 100, 0x6000010, 1, shipped)
    assert found == [
        ArchivePiece(shipped[0], 0x2000, None),
        ArchivePiece(shipped[1], 0, None),
        ArchivePiece(shipped[2], 0, None),
        ArchivePiece(shipped[3], 0, PAGE_END),
    ]


def test_a_missing_segment_is_refused_by_name() -> None:
    with pytest.raises(PermanentError, match="000000010000000000000005 was never archived"):
        wal.pieces(0x4000000, 0x6000000, 1, ["000000010000000000000004"])
    assert wal.pieces(0x4000000, 0x4000000, 1, []) == []


def test_only_finished_files_match_the_archive_pattern() -> None:
    import re

    pattern = re.compile(wal.ARCHIVED_NAMES)
    assert pattern.fullmatch("000000010000000000000004")
    assert pattern.fullmatch("00000002.history")
    assert pattern.fullmatch("000000010000000000000003.00000028.backup")
    assert not pattern.fullmatch("000000010000000000000004.part")
    assert not pattern.fullmatch("../../etc/passwd")


def test_the_apply_script_writes_each_piece_at_its_offset_and_pads_the_segment(tmp_path: pathlib.Path) -> None:
    staging, wal_dir = tmp_path / "0", tmp_path / "pg_wal"
    staging.mkdir()
    wal_dir.mkdir()
    segment = "000000010000000000000004"
    (wal_dir / segment).write_bytes(b"A" * 10)  # the base's copy: its head
    (staging / f"{segment}.4").write_bytes(b"BBBB")
    (staging / "000000010000000000000005.0").write_bytes(b"CC")
    script = wal.apply_pieces_script([str(staging)], str(wal_dir), segment_bytes=64)
    subprocess.run(["sh", "-c", script], check=True)
    assert (wal_dir / segment).read_bytes() == b"AAAABBBBAA" + bytes(54)
    assert (wal_dir / "000000010000000000000005").read_bytes() == b"CC" + bytes(62)

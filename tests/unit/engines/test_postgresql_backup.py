"""The pure parts of PostgreSQL backups: the tar tap, the manifest, the tool's argv and files, restore plans."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile

import pytest

from reddwarf.domain.backup import ChainLink, ParentBackup
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import WORK_DIR, Placement
from reddwarf.engines.postgresql import walbackup
from reddwarf.engines.postgresql.backup import (
    FULL_STRATEGY,
    INCREMENTAL_STRATEGY,
    MANIFEST,
    PostgresqlBackupRun,
    PostgresqlBackups,
    conninfo,
    lsn_value,
    parse_manifest,
    passfile_line,
)
from reddwarf.engines.postgresql.tartap import BLOCK, TarError, TarMemberTap

PG15 = DatastoreVersion("postgresql", "15", "15.18", "/usr/lib/postgresql/15/bin")
PG18 = DatastoreVersion("postgresql", "18", "18.6", "/opt/pg/18/bin")
PASSWORD = "never:in\\argv"
PLACEMENT = Placement(
    instance_id="inst-1", os_user="rd-inst1", address="127.0.1.7", port=5432, data_dir="/v/i/data",
    config_dir="/v/i/config", log_dir="/v/i/log", run_dir="/v/i/run", socket_dir="/s/i1", scratch_dir="/v/i/tmp",
)  # fmt: skip


def manifest(ranges: list[tuple[int, str, str]], system_identifier: int | None = 7715437719069575315) -> bytes:
    """A manifest shaped as PostgreSQL writes it: one JSON line per item, then its SHA-256 as the last line."""
    version = 1 if system_identifier is None else 2
    head = f'{{ "PostgreSQL-Backup-Manifest-Version": {version},\n'
    if system_identifier is not None:
        head += f'"System-Identifier": {system_identifier},\n'
    head += '"Files": [\n{ "Path": "backup_label", "Size": 225, "Checksum-Algorithm": "CRC32C", '
    head += '"Checksum": "1f" }\n],\n'
    head += '"WAL-Ranges": [\n'
    head += ",\n".join(f'{{ "Timeline": {t}, "Start-LSN": "{s}", "End-LSN": "{e}" }}' for t, s, e in ranges)
    head += "\n],\n"
    digest = hashlib.sha256(head.encode()).hexdigest()
    return (head + f'"Manifest-Checksum": "{digest}"}}\n').encode()


def tar_of(members: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def feed_in_pieces(tap: TarMemberTap, data: bytes, seed: int) -> None:
    chance = random.Random(seed)
    at = 0
    while at < len(data):
        size = chance.choice([1, 7, 511, 512, 513, 4096, 65536])
        tap.feed(data[at : at + size])
        at += size


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_tap_keeps_the_wanted_member_whatever_the_pieces(seed: int, fmt: int) -> None:
    content = manifest([(1, "0/2000028", "0/2000100")])
    long_dir = "base/" + "d" * 120  # a name over 100 bytes: prefix, GNU long name or pax path
    data = tar_of(
        [("PG_VERSION", b"15\n"), (f"{long_dir}/16384", b"x" * 9000), ("empty", b""), (MANIFEST, content)], fmt
    ) + b"\0" * 5000  # whatever follows the end of the archive is ignored
    tap = TarMemberTap(MANIFEST, 1 << 20)
    feed_in_pieces(tap, data, seed)
    assert tap.content == content and tap.ended and tap.members == 4


def test_a_member_with_the_name_deeper_down_is_not_the_manifest() -> None:
    tap = TarMemberTap(MANIFEST, 1 << 20)
    tap.feed(tar_of([("base/backup_manifest", b"not it"), ("./backup_manifest", b"it")]))
    assert tap.content == b"it"


def test_a_stream_without_the_member_or_cut_short_keeps_nothing() -> None:
    tap = TarMemberTap(MANIFEST, 1 << 20)
    tap.feed(tar_of([("PG_VERSION", b"15\n")]))
    assert tap.content is None and tap.ended
    cut = TarMemberTap(MANIFEST, 1 << 20)
    whole = tar_of([(MANIFEST, b"y" * 3000)])
    cut.feed(whole[: BLOCK + 1000])
    assert cut.content is None and not cut.ended


def test_garbage_and_a_too_large_member_are_refused() -> None:
    with pytest.raises(TarError, match="checksum"):
        TarMemberTap(MANIFEST, 1 << 20).feed(b"\x01" * BLOCK)
    with pytest.raises(TarError, match="at most 100"):
        TarMemberTap(MANIFEST, 100).feed(tar_of([(MANIFEST, b"z" * 101)]))


def test_the_manifest_gives_the_wal_range_across_timelines() -> None:
    info = parse_manifest(manifest([(2, "0/3000000", "0/5000100"), (1, "0/2000028", "0/3000000")]))
    assert (info.start_lsn, info.end_lsn, info.timeline) == ("0/2000028", "0/5000100", 2)
    assert info.system_identifier == "7715437719069575315" and info.version == 2
    assert parse_manifest(manifest([(1, "0/2000028", "0/2000100")], None)).system_identifier is None
    assert lsn_value("1/2000028") == (1 << 32) + 0x2000028


def test_a_damaged_manifest_is_refused() -> None:
    good = manifest([(1, "0/2000028", "0/2000100")])
    with pytest.raises(ValueError, match="checksum"):
        parse_manifest(good.replace(b"0/2000100", b"0/2000101"))
    with pytest.raises(ValueError, match="JSON"):
        parse_manifest(good[:-40])


def test_the_backup_tool_runs_as_the_control_plane_with_the_password_in_a_secret_file() -> None:
    run = PostgresqlBackups(PG18, "reddwarf_admin").backup(PLACEMENT, Secret(PASSWORD), None)
    tool = run.tool
    assert not tool.as_instance and not tool.stdin
    assert tool.argv[0] == "/opt/pg/18/bin/pg_basebackup"
    assert all(PASSWORD not in part for part in tool.argv)
    for flag in ("--pgdata", "--format", "--wal-method", "--checkpoint"):
        assert tool.argv[tool.argv.index(flag) + 1] == {"--pgdata": "-", "--format": "tar", "--wal-method": "fetch",
                                                        "--checkpoint": "fast"}[flag]  # fmt: skip
    dsn = tool.argv[tool.argv.index("--dbname") + 1]
    assert "requirepeer='rd-inst1'" in dsn and "host='/s/i1'" in dsn and "require_auth='scram-sha-256'" in dsn
    (passfile,) = tool.files
    assert passfile.secret and passfile.content == "*:*:*:reddwarf_admin:never\\:in\\\\argv\n"
    assert dict(tool.env)["PGPASSFILE"] == f"{WORK_DIR}/{passfile.path}"
    # libpq 15 has no require_auth: requirepeer alone keeps the password to the instance's own server.
    old = PostgresqlBackups(PG15, "reddwarf_admin").backup(PLACEMENT, Secret(PASSWORD), None).tool
    assert "require_auth" not in " ".join(old.argv) and "requirepeer='rd-inst1'" in " ".join(old.argv)


def test_an_incremental_names_its_parents_manifest_in_the_work_directory() -> None:
    parent = ParentBackup("b-1", {"summarize_wal": True}, {MANIFEST: manifest([(1, "0/2000028", "0/2000100")])})
    tool = PostgresqlBackups(PG18, "reddwarf_admin").backup(PLACEMENT, Secret(PASSWORD), parent).tool
    (flag,) = [part for part in tool.argv if part.startswith("--incremental=")]
    name = flag.removeprefix(f"--incremental={WORK_DIR}/")
    (side,) = [file for file in tool.files if file.path == name]
    assert side.content.encode() == parent.side_files[MANIFEST]
    with pytest.raises(PermanentError, match="no backup_manifest"):
        PostgresqlBackups(PG18, "reddwarf_admin").backup(PLACEMENT, Secret(PASSWORD), ParentBackup("b-2", {}, {}))


def test_finish_records_the_wal_range_and_the_manifest() -> None:
    run = PostgresqlBackupRun(PG18, PLACEMENT, "reddwarf_admin", Secret(PASSWORD), None)
    content = manifest([(1, "0/2000028", "0/2000100")])
    stream = tar_of([("PG_VERSION", b"18\n"), (MANIFEST, content)])
    run.observe(stream[:700])
    run.observe(stream[700:])
    result = run.finish({})
    assert result.side_files == {MANIFEST: content}
    assert result.metadata["start_lsn"] == "0/2000028" and result.metadata["end_lsn"] == "0/2000100"
    assert result.metadata["timeline"] == 1 and result.metadata["major"] == 18 and not result.metadata["incremental"]
    assert run.raw_bytes == len(stream)


def test_a_stream_without_a_manifest_is_a_permanent_error() -> None:
    run = PostgresqlBackupRun(PG15, PLACEMENT, "reddwarf_admin", Secret(PASSWORD), None)
    run.observe(tar_of([("PG_VERSION", b"15\n")]))
    with pytest.raises(PermanentError, match="no backup_manifest"):
        run.finish({})
    with pytest.raises(PermanentError, match="unreadable tar"):
        PostgresqlBackupRun(PG15, PLACEMENT, "reddwarf_admin", Secret(PASSWORD), None).observe(b"\x01" * BLOCK)


def test_strategies_per_version() -> None:
    assert PostgresqlBackups(PG18, "a").strategies().incremental == INCREMENTAL_STRATEGY
    old = PostgresqlBackups(PG15, "a").strategies()
    assert old.full == FULL_STRATEGY and old.incremental == walbackup.STRATEGY


def test_a_postgresql_15_incremental_has_no_tool_and_restores_its_wal_into_pg_wal() -> None:
    parent = ParentBackup("b-1", {"end_lsn": "0/3000100", "timeline": 1}, {})
    run = PostgresqlBackups(PG15, "a").backup(PLACEMENT, Secret(PASSWORD), parent)
    assert run.tool is None
    chain = [link("b-1", FULL_STRATEGY, 15), ChainLink("b-2", walbackup.STRATEGY, {"segment_bytes": 1 << 24}, {})]
    plan = PostgresqlBackups(PG15, "a").restore(PLACEMENT, chain)
    assert len(plan.extract) == 2
    link_in, verify, disarm, apply, clean = plan.init
    assert disarm.argv[:3] == ("rm", "-f", "--") and "/v/i/data/standby.signal" in disarm.argv
    assert link_in.argv[0] == "cp" and verify.argv[0].endswith("pg_verifybackup")
    assert "/v/i/tmp/restore/1" in apply.argv[-1] and "/v/i/data/pg_wal" in apply.argv[-1]
    assert clean.argv == ("rm", "-rf", "--", "/v/i/tmp/restore")


def link(backup_id: str, strategy: str, major: int = 18) -> ChainLink:
    return ChainLink(backup_id, strategy, {"major": major}, {})


def test_restoring_one_full_backup_links_it_into_place_and_verifies_it() -> None:
    plan = PostgresqlBackups(PG15, "a").restore(PLACEMENT, [link("b-1", FULL_STRATEGY, 15)])
    (extract,) = plan.extract
    assert extract.as_instance and extract.stdin
    assert extract.argv[-2:] == ("/v/i/tmp/restore", "/v/i/tmp/restore/0")  # the first empties the staging area
    link_in, verify, disarm, clean = plan.init
    assert "/v/i/data/recovery.signal" in disarm.argv
    assert link_in.argv[0] == "cp" and link_in.argv[-2:] == ("/v/i/tmp/restore/0", "/v/i/data")
    assert verify.argv == ("/usr/lib/postgresql/15/bin/pg_verifybackup", "/v/i/data")
    assert clean.argv == ("rm", "-rf", "--", "/v/i/tmp/restore")


def test_restoring_a_chain_combines_it_into_the_data_directory() -> None:
    chain = [link("b-1", FULL_STRATEGY), link("b-2", INCREMENTAL_STRATEGY), link("b-3", INCREMENTAL_STRATEGY)]
    plan = PostgresqlBackups(PG18, "a").restore(PLACEMENT, chain)
    assert [tool.argv[-2:] for tool in plan.extract] == [
        ("/v/i/tmp/restore", "/v/i/tmp/restore/0"),
        ("/v/i/tmp/restore/1", "/v/i/tmp/restore/1"),
        ("/v/i/tmp/restore/2", "/v/i/tmp/restore/2"),
    ]
    combine = plan.init[0].argv
    assert combine[0] == "/opt/pg/18/bin/pg_combinebackup"
    assert combine[-5:] == ("/v/i/tmp/restore/0", "/v/i/tmp/restore/1", "/v/i/tmp/restore/2", "--output", "/v/i/data")


@pytest.mark.parametrize(
    ("version", "chain", "message"),
    [
        (PG18, [], "at least one"),
        (PG18, [link("b-2", INCREMENTAL_STRATEGY)], "not a full backup"),
        (PG15, [link("b-1", FULL_STRATEGY, 15), link("b-2", INCREMENTAL_STRATEGY, 15)], "not an incremental"),
        (PG18, [link("b-1", FULL_STRATEGY), link("b-2", walbackup.STRATEGY)], "not an incremental"),
        (PG18, [link("b-1", FULL_STRATEGY, 15)], "of PostgreSQL 15"),
    ],
)
def test_a_chain_the_version_cannot_restore_is_refused(
    version: DatastoreVersion, chain: list[ChainLink], message: str
) -> None:
    with pytest.raises(PermanentError, match=message):
        PostgresqlBackups(version, "a").restore(PLACEMENT, chain)


def test_connection_strings_quote_their_values() -> None:
    odd = Placement(**{**{f: getattr(PLACEMENT, f) for f in PLACEMENT.__slots__}, "socket_dir": "/s/it's \\ x"})
    assert "host='/s/it\\'s \\\\ x'" in conninfo(odd, "u", 18)
    with pytest.raises(ValueError):
        passfile_line("u", Secret("two\nlines"))

"""PostgreSQL backups and restores with the server's own tools: the `reddwarf.engines.base.Backups` of one version.

Taking a backup: `pg_basebackup -D - -Ft -X fetch` writes the whole cluster, the WAL it needs to be
consistent and (injected by pg_basebackup) its `backup_manifest`, as one tar on stdout (`-X stream` is refused
to stdout). It runs as the control plane (`ToolSpec.as_instance=False`): it only talks to the server over the
instance's unix socket and writes to stdout, so it reads no file a tenant could swap for a symlink. It logs in
as Reddwarf's admin with libpq's `requirepeer=<instance OS user>`, so the password only ever goes to the
instance's own server, and (libpq 16 and later) `require_auth=scram-sha-256`, so that server gets a SCRAM
proof, never the password. The password is in a 0600 passfile in the tool's private work directory, never in
argv. `PostgresqlBackupRun.observe()` taps the stream for the manifest (`tartap`), whose WAL range is the
backup's metadata and which an incremental child names as its parent.

Incrementals (PostgreSQL 17 and later): `--incremental=<the parent's manifest>` sends only the blocks changed
since the parent, found from the server's WAL summaries; `summarize_wal = on` must have been on since before
the parent was taken (config.py renders it for those versions; a server started before that answers
`incremental_blocker()` with the restart it needs). PostgreSQL 15 and 16: the WAL written since the parent,
from the archive every server keeps (`walbackup`, `wal`).

Restoring: each link of the chain is extracted by `tar -x`, as the new instance's OS user, into
`<scratch_dir>/restore/<i>`; the instance's init commands then hard-link the one full backup into the data
directory, or `pg_combinebackup --link` the chain into it, check the result with `pg_verifybackup` against the
manifest, and remove the staging area. The restored server starts as the new instance's: address, port,
socket directory and hba file are on its command line (`config.pinned_arguments`), above anything the
tenant's `postgresql.auto.conf` carried; `adopt()` then rotates the admin password to the new instance's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from psycopg import sql

from reddwarf.domain.backup import (
    ArchivePiece,
    ArchiveSpec,
    BackupResult,
    BackupStrategies,
    ChainLink,
    ParentBackup,
    RestorePlan,
)
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import WORK_DIR, CommandSpec, FileSpec, Placement, ToolSpec
from reddwarf.engines.postgresql import admin, wal, walbackup
from reddwarf.engines.postgresql.tartap import TarError, TarMemberTap

log = logging.getLogger(__name__)

FULL_STRATEGY = "pg_basebackup"
INCREMENTAL_STRATEGY = "pg_basebackup_incremental"
MANIFEST = "backup_manifest"
# A manifest lists every file of the cluster (~200 bytes each): 64 MiB is some 300,000 files.
MANIFEST_LIMIT = 64 << 20
FIRST_INCREMENTAL_MAJOR = 17  # summarize_wal and pg_basebackup --incremental
FIRST_REQUIRE_AUTH_MAJOR = 16  # libpq's require_auth
PASSFILE = "pgpass"
PARENT_MANIFEST = "parent_backup_manifest"
RESTORE_DIR = "restore"
LIVE_TIMEOUT = 5.0
# Init commands of a restore move, combine or verify the whole database: bounded, but by hours, not the
# two minutes of an initdb (the operation's deadline and lease bound them too).
RESTORE_COMMAND_TIMEOUT = 6 * 3600.0
RESTART_REASON = (
    "restart the instance to enable incremental backups (it was started before WAL summarization, which "
    "PostgreSQL's incremental backups need, was turned on)"
)


def major_of(version: DatastoreVersion) -> int:
    """The major version number ("18.6" -> 18)."""
    return int((version.number or version.name).split(".", 1)[0])


def has_incrementals(version: DatastoreVersion) -> bool:
    """Block-level incrementals (`pg_basebackup --incremental`, `summarize_wal`) exist from PostgreSQL 17."""
    return major_of(version) >= FIRST_INCREMENTAL_MAJOR




def _conninfo_value(value: str) -> str:
    if any(ch in value for ch in "\n\r\0"):
        raise ValueError("connection parameters cannot contain line breaks or NUL")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(placement: Placement, user: str, major: int) -> str:
    """libpq's connection string for a tool run as the control plane: the instance's unix socket, its server
    checked to run as the instance's OS user before anything is sent (`requirepeer`), SCRAM only where the
    tool's libpq can insist on it. Holds no secret: it goes in argv."""
    params = [
        ("host", placement.socket_dir),
        ("port", str(placement.port)),
        ("user", user),
        ("requirepeer", placement.os_user),
        ("sslmode", "disable"),
        ("gssencmode", "disable"),
        ("connect_timeout", "10"),
        ("application_name", "reddwarf-backup"),
    ]
    if major >= FIRST_REQUIRE_AUTH_MAJOR:
        params.append(("require_auth", "scram-sha-256"))
    return " ".join(f"{name}={_conninfo_value(value)}" for name, value in params)


def passfile_line(user: str, password: Secret) -> str:
    """A `.pgpass` line for `user` on any host, port and database (`:` and `\\` escaped)."""
    text = password.reveal()
    if not text or any(ch in text for ch in "\n\r\0"):
        raise ValueError("the admin password must be non-empty and hold no line breaks or NUL")

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    return f"*:*:*:{escape(user)}:{escape(text)}\n"


# -- the manifest -----------------------------------------------------------------------------------------


def lsn_value(text: str) -> int:
    """PostgreSQL's `X/Y` LSN as a number."""
    high, sep, low = text.partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a backup manifest says of the backup: its WAL range and the cluster it came from."""

    version: int
    start_lsn: str
    end_lsn: str
    timeline: int
    system_identifier: str | None


def parse_manifest(raw: bytes) -> ManifestInfo:
    """Check a backup manifest's own SHA-256 (over everything before its last line) and read its WAL range;
    `ValueError` for anything that is not a whole, intact manifest."""
    body = raw.rstrip(b"\n")
    cut = body.rfind(b"\n")
    if cut < 0:
        raise ValueError("the backup manifest has a single line")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the backup manifest is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("the backup manifest is not a JSON object")
    if hashlib.sha256(raw[: cut + 1]).hexdigest() != document.get("Manifest-Checksum"):
        raise ValueError("the backup manifest does not match its own checksum")
    ranges = document.get("WAL-Ranges")
    if not isinstance(ranges, list) or not ranges:
        raise ValueError("the backup manifest has no WAL range")
    try:
        spans = [(int(r["Timeline"]), lsn_value(r["Start-LSN"]), lsn_value(r["End-LSN"]), r) for r in ranges]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the backup manifest has a malformed WAL range: {exc}") from None
    # One range per timeline the backup's WAL crossed: it starts in the oldest, ends in the newest.
    first = min(spans, key=lambda span: span[1])
    last = max(spans, key=lambda span: span[2])
    identifier = document.get("System-Identifier")
    return ManifestInfo(
        version=int(document.get("PostgreSQL-Backup-Manifest-Version", 0)),
        start_lsn=str(first[3]["Start-LSN"]),
        end_lsn=str(last[3]["End-LSN"]),
        timeline=last[0],
        system_identifier=None if identifier is None else str(identifier),
    )


# -- live reads -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerFacts:
    system_identifier: str
    version_num: int
    summarize_wal: bool


def server_facts(placement: Placement, admin_user: str, password: Secret, timeout: float = LIVE_TIMEOUT) -> ServerFacts:
    """The cluster's identity and whether it summarizes WAL, over the unix socket as the admin."""
    where = admin.target(placement, admin_user, password, timeout=timeout)
    with admin.session(where) as conn, admin.refusals("read the server's settings"):
        row = conn.execute(
            "SELECT pg_catalog.current_setting('server_version_num'),"
            " (SELECT system_identifier FROM pg_catalog.pg_control_system())::pg_catalog.text,"
            " pg_catalog.current_setting('summarize_wal', true)"
        ).fetchone()
    if row is None:
        raise TemporaryError(f"PostgreSQL at {where.where} answered no settings")
    return ServerFacts(system_identifier=str(row[1]), version_num=int(row[0]), summarize_wal=row[2] == "on")


# -- taking a backup --------------------------------------------------------------------------------------


class PostgresqlBackupRun:
    """One `pg_basebackup` (see `reddwarf.engines.base.BackupRun` and the module docstring)."""

    def __init__(
        self, version: DatastoreVersion, placement: Placement, admin_user: str, admin_password: Secret,
        parent: ParentBackup | None,
    ) -> None:
        self._version = version
        self._major = major_of(version)
        self._placement = placement
        self._admin_user = admin_user
        self._password = admin_password
        self._parent = parent
        self._facts: ServerFacts | None = None
        self._tap = TarMemberTap(MANIFEST, MANIFEST_LIMIT)
        self.raw_bytes = 0
        self._tool = self._build_tool()

    @property
    def tool(self) -> ToolSpec | None:
        return self._tool

    def pieces(self, shipped: Sequence[str]) -> Sequence[ArchivePiece]:
        return ()  # a tool's stream, not the archive

    def _build_tool(self) -> ToolSpec:
        argv = [
            str(PurePosixPath(self._version.bin_dir) / "pg_basebackup"),
            "--dbname", conninfo(self._placement, self._admin_user, self._major),
            "--pgdata", "-",
            "--format", "tar",
            "--wal-method", "fetch",
            # An immediate checkpoint: the default spreads the starting checkpoint over most of
            # checkpoint_timeout (minutes on a busy server), during which the backup only waits. One burst
            # of writes at the start is cheaper than holding the operation, and the WAL it must keep, open.
            "--checkpoint", "fast",
        ]  # fmt: skip
        files = [FileSpec(PASSFILE, passfile_line(self._admin_user, self._password), secret=True)]
        if self._parent is not None:
            manifest = self._parent.side_files.get(MANIFEST)
            if manifest is None:
                raise PermanentError(f"parent backup {self._parent.backup_id} has no {MANIFEST}")
            try:
                text = manifest.decode("utf-8")
            except UnicodeDecodeError:
                raise PermanentError(f"the {MANIFEST} of parent backup {self._parent.backup_id} is not UTF-8") from None
            files.append(FileSpec(PARENT_MANIFEST, text))
            argv.append(f"--incremental={WORK_DIR}/{PARENT_MANIFEST}")
        return ToolSpec(
            argv=tuple(argv),
            env=(("PGPASSFILE", f"{WORK_DIR}/{PASSFILE}"), ("TZ", "UTC")),
            files=tuple(files),
            as_instance=False,
            description="pg_basebackup" + (" --incremental" if self._parent is not None else ""),
        )

    def prepare(self) -> None:
        """Read the cluster's identity; for an incremental, check that it can be taken against this parent."""
        facts = server_facts(self._placement, self._admin_user, self._password)
        self._facts = facts
        parent = self._parent
        if parent is None:
            return
        if not has_incrementals(self._version):
            raise PermanentError(f"PostgreSQL {self._major} has no block-level incremental backups")
        if not facts.summarize_wal:
            raise PermanentError(RESTART_REASON)
        if parent.metadata.get("system_identifier") not in (None, facts.system_identifier):
            raise PermanentError(f"parent backup {parent.backup_id} is of another PostgreSQL cluster")
        if parent.metadata.get("summarize_wal") is not True:
            raise PermanentError(
                f"parent backup {parent.backup_id} was taken before WAL summarization was on: take a full "
                "backup, then incrementals of it"
            )

    def observe(self, data: bytes) -> None:
        self.raw_bytes += len(data)
        try:
            self._tap.feed(data)
        except TarError as exc:
            raise PermanentError(
                f"pg_basebackup of instance {self._placement.instance_id} wrote an unreadable tar: {exc}"
            ) from None

    def finish(self, collected: Mapping[str, bytes]) -> BackupResult:
        where = f"pg_basebackup of instance {self._placement.instance_id}"
        manifest = self._tap.content
        if not self._tap.ended or manifest is None:
            raise PermanentError(f"{where} wrote no {MANIFEST}: the backup is incomplete")
        try:
            info = parse_manifest(manifest)
        except ValueError as exc:
            raise PermanentError(f"{where}: {exc}") from None
        facts = self._facts
        if facts is not None and info.system_identifier not in (None, facts.system_identifier):
            raise PermanentError(f"{where}: the manifest is of another cluster than the instance's")
        metadata: dict[str, Any] = {
            "start_lsn": info.start_lsn,
            "end_lsn": info.end_lsn,
            "timeline": info.timeline,
            "version": self._version.number,
            "major": self._major,
            "manifest_version": info.version,
            "incremental": self._parent is not None,
        }
        if self._parent is not None:
            metadata["parent_id"] = self._parent.backup_id
        identifier = info.system_identifier or (facts.system_identifier if facts else None)
        if identifier is not None:
            metadata["system_identifier"] = identifier
        if facts is not None:
            metadata["summarize_wal"] = facts.summarize_wal
        return BackupResult(metadata=metadata, side_files={MANIFEST: manifest})


# -- restoring --------------------------------------------------------------------------------------------

# Runs as the new instance's OS user with a link's verified stream on stdin: start from an empty directory
# (a retried restore extracts again), then extract. GNU tar run by a non-root user keeps no owner and applies
# the umask (077): every file is the instance user's, 0600 or 0700, as PostgreSQL requires.
_EXTRACT = 'set -e; rm -rf -- "$1"; mkdir -p -m 0700 -- "$2"; exec tar -x -f - -C "$2"'


def _disarm(data_dir: str) -> CommandSpec:
    """pg_basebackup leaves the signal files out, but the tar came from a server the tenant could have
    replaced: a restored server never starts as a standby or in archive recovery, whatever the backup held."""
    root = PurePosixPath(data_dir)
    return CommandSpec(
        argv=("rm", "-f", "--", str(root / "standby.signal"), str(root / "recovery.signal"),
              str(root / "postmaster.pid")),
        timeout=RESTORE_COMMAND_TIMEOUT,
    )


class PostgresqlBackups:
    """`reddwarf.engines.base.Backups` for one PostgreSQL version (module docstring)."""

    def __init__(self, version: DatastoreVersion, admin_user: str) -> None:
        self._version = version
        self._major = major_of(version)
        self._admin_user = admin_user
        self._bin = PurePosixPath(version.bin_dir)

    def strategies(self) -> BackupStrategies:
        if has_incrementals(self._version):
            return BackupStrategies(full=FULL_STRATEGY, incremental=INCREMENTAL_STRATEGY)
        return BackupStrategies(full=FULL_STRATEGY, incremental=walbackup.STRATEGY)

    def incremental_blocker(self, placement: Placement, admin_password: Secret) -> str | None:
        if not has_incrementals(self._version):
            facts = walbackup.archive_facts(placement, self._admin_user, admin_password)
            return None if facts.archiving else walbackup.ARCHIVE_RESTART_REASON
        if not server_facts(placement, self._admin_user, admin_password).summarize_wal:
            return RESTART_REASON
        return None

    def backup(
        self, placement: Placement, admin_password: Secret, parent: ParentBackup | None
    ) -> PostgresqlBackupRun | walbackup.WalIncrementalRun:
        if parent is not None and not has_incrementals(self._version):
            return walbackup.WalIncrementalRun(self._version, placement, self._admin_user, admin_password, parent)
        return PostgresqlBackupRun(self._version, placement, self._admin_user, admin_password, parent)

    def archive(self, placement: Placement) -> ArchiveSpec | None:
        """Every server archives its WAL into the instance's own directory (`wal`), shipped by the control
        plane: the WAL-based incrementals and, later, point-in-time restore read it."""
        return wal.archive_spec(placement)

    def restore(self, placement: Placement, chain: Sequence[ChainLink]) -> RestorePlan:
        self._check_chain(chain)
        root = PurePosixPath(placement.scratch_dir) / RESTORE_DIR
        staged = [str(root / str(index)) for index in range(len(chain))]
        extract = tuple(
            ToolSpec(
                argv=("sh", "-c", _EXTRACT, "sh", str(root) if index == 0 else staged[index], staged[index]),
                as_instance=True,
                stdin=True,
                description=f"tar -x of backup {link.backup_id}",
            )
            for index, link in enumerate(chain)
        )
        data_dir = placement.data_dir
        if len(chain) > 1 and chain[1].strategy == walbackup.STRATEGY:
            return self._restore_wal(root, staged, extract, data_dir, chain)
        if len(chain) == 1:
            # Hard links on the same file system (the instance's volume): nothing is copied, and the staged
            # backup stays whole until the last command removes it, so init re-run after a crash (the runtime
            # wipes the data directory first) starts from it again. No server runs before then, so nothing
            # writes through the shared inodes.
            into_place = CommandSpec(
                argv=("cp", "-a", "--link", "--no-target-directory", staged[0], data_dir),
                timeout=RESTORE_COMMAND_TIMEOUT,
            )
        else:
            into_place = CommandSpec(
                argv=(
                    str(self._bin / "pg_combinebackup"),
                    # The runtime syncs the volume once after init; hard links to the staged files rather
                    # than copies (as above: the staging area is removed before any server starts), so a
                    # restore needs the room of the chain, not twice that.
                    "--no-sync",
                    "--link",
                    *staged,
                    "--output",
                    data_dir,
                ),
                timeout=RESTORE_COMMAND_TIMEOUT,
            )
        # Every file against the manifest (sizes and checksums), and the WAL the server will replay to become
        # consistent parsed with pg_waldump: a backup that would not start is refused here, before any server.
        verify = CommandSpec(argv=(str(self._bin / "pg_verifybackup"), data_dir), timeout=RESTORE_COMMAND_TIMEOUT)
        clean = CommandSpec(argv=("rm", "-rf", "--", str(root)), timeout=RESTORE_COMMAND_TIMEOUT)
        return RestorePlan(extract=extract, init=(into_place, verify, _disarm(data_dir), clean))

    def _restore_wal(
        self, root: PurePosixPath, staged: list[str], extract: tuple[ToolSpec, ...], data_dir: str,
        chain: Sequence[ChainLink],
    ) -> RestorePlan:
        """The full backup as above, checked against its manifest; then every incremental's WAL pieces written
        at their offsets into its pg_wal (replayed by the first start's crash recovery)."""
        segment_bytes = int(chain[-1].metadata.get("segment_bytes", wal.DEFAULT_SEGMENT))
        script = wal.apply_pieces_script(staged[1:], str(PurePosixPath(data_dir) / "pg_wal"), segment_bytes)
        return RestorePlan(extract=extract, init=(
            CommandSpec(argv=("cp", "-a", "--link", "--no-target-directory", staged[0], data_dir),
                        timeout=RESTORE_COMMAND_TIMEOUT),
            CommandSpec(argv=(str(self._bin / "pg_verifybackup"), data_dir), timeout=RESTORE_COMMAND_TIMEOUT),
            _disarm(data_dir),
            CommandSpec(argv=("sh", "-c", script), timeout=RESTORE_COMMAND_TIMEOUT),
            CommandSpec(argv=("rm", "-rf", "--", str(root)), timeout=RESTORE_COMMAND_TIMEOUT),
        ))

    def _check_chain(self, chain: Sequence[ChainLink]) -> None:
        if not chain:
            raise PermanentError("a restore needs at least one backup")
        if chain[0].strategy != FULL_STRATEGY:
            raise PermanentError(f"backup {chain[0].backup_id} is not a full backup: a chain starts with one")
        wanted = INCREMENTAL_STRATEGY if has_incrementals(self._version) else walbackup.STRATEGY
        for link in chain[1:]:
            if link.strategy != wanted:
                raise PermanentError(
                    f"backup {link.backup_id} is not an incremental PostgreSQL {self._major} can apply"
                )
        for link in chain:
            major = link.metadata.get("major")
            if major is not None and major != self._major:
                raise PermanentError(
                    f"backup {link.backup_id} is of PostgreSQL {major}; it restores only into PostgreSQL {major}"
                )

    def adopt(self, placement: Placement, old_admin: Secret, new_admin: Secret) -> None:
        """Make the restored server's admin password the new instance's: nothing to do when `new_admin` logs
        in; else log in with the source's and set the new one (as a SCRAM verifier)."""
        new = admin.target(placement, self._admin_user, new_admin, timeout=LIVE_TIMEOUT)
        if admin.probe(new):
            return
        old = admin.target(placement, self._admin_user, old_admin, timeout=LIVE_TIMEOUT)
        try:
            with admin.session(old) as conn:
                admin.set_password(conn, self._admin_user, new_admin)
        except TemporaryError:
            if admin.probe(new):  # another attempt rotated it meanwhile
                return
            raise
        log.info("instance %s: rotated the restored server's admin password", placement.instance_id)

    def check(self, placement: Placement, admin_password: Secret, timeout: float) -> str:
        """The restore already ran `pg_verifybackup` (every file against the backup's manifest). Here, in every
        database that accepts connections: `amcheck`'s `bt_index_check` on every valid B-tree index (system
        and tenant; each index page read, so data checksums are checked too), the extension created in a
        schema of its own when missing. Without amcheck installed, only a read of `pg_class` in each."""
        where = admin.target(placement, self._admin_user, admin_password, timeout=timeout)
        with admin.session(where) as conn, admin.refusals("list the restored databases"):
            names = [str(row[0]) for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname").fetchall()]
            amcheck = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'").fetchone()
        indexes = 0
        for name in names:
            there = admin.target(placement, self._admin_user, admin_password, dbname=name, timeout=timeout)
            with admin.session(there) as conn, admin.refusals(f"check the database {name!r} of the restored server"):
                if amcheck is None:
                    conn.execute("SELECT count(*) FROM pg_class").fetchone()
                    continue
                conn.execute("CREATE SCHEMA IF NOT EXISTS reddwarf_verify")
                conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA reddwarf_verify")
                found = conn.execute(
                    "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'amcheck'").fetchone()
                schema = sql.Identifier(str(found[0]) if found else "reddwarf_verify")
                row = conn.execute(sql.SQL(
                    "SELECT count({}.bt_index_check(c.oid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'btree' AND i.indisvalid "
                    "AND i.indisready AND c.relpersistence <> 't'").format(schema)).fetchone()
                indexes += int(row[0]) if row else 0
        checked = (f"amcheck bt_index_check on {indexes} B-tree indexes" if amcheck is not None
                   else "the catalogs read (amcheck is not installed)")
        return f"pg_verifybackup passed; {len(names)} databases answered; {checked}"

"""MariaDB backups and restores with `mariadb-backup` (the `reddwarf.engines.base.Backups` implementation).

Backup: `mariadb-backup --backup --stream=xbstream` writes the whole data directory (InnoDB pages, the redo
log written meanwhile, Aria/MyISAM files, `.frm`s) to stdout; an incremental adds `--incremental-lsn=<the
parent's to_lsn>` and streams only the pages changed since. It reads the data directory, so it runs as the
instance's OS user (never as root: a tenant who can run code as that user could plant a symlink there and
have root copy a host file into its backup). It logs in over the instance's unix socket as the backup
account (`ensure_backup_account`), which needs no secret. `--extra-lsndir` leaves `xtrabackup_checkpoints`
(the LSNs) and `xtrabackup_info` (versions, binlog position and GTID) in the tool's work directory, where
the control plane collects them; they come from a directory the instance's OS user can write, so they are
parsed defensively (`parse_checkpoints`, `parse_info`): a tenant can spoil only its own backups' metadata.

Restore (`RestorePlan`): each link's stream is unpacked by `mbstream -x` into `<scratch>/restore/<i>`; the
init commands prepare the full one (`--prepare`), apply each increment in order (`--incremental-dir`), move
the result into the empty datadir (`--move-back`; staging and data share the instance's volume, so this is
renames) and remove the staging area. They use `--no-defaults` with the paths given explicitly: no option
file of the host (`/etc/mysql`) or of the instance is read, and the instance's `my.cnf` (written at start)
does not exist yet. The redo log comes back at the prepared size; the server resizes it to `my.cnf`'s
`innodb_log_file_size` at its first start. The runtime's wipe of a half-initialised data directory before
init reaches only the data directory, never the staging area in the scratch directory.

The restored server holds the source's accounts: `adopt` rotates the admin's password (sent as its hash
only) on every admin host of the new placement, drops the admin at hosts that are no longer its own, and
replaces the source's backup account by the new instance's.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import pymysql

from reddwarf.domain.backup import BackupResult, BackupStrategies, ChainLink, ParentBackup, RestorePlan
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import WORK_DIR, CommandSpec, Placement, ToolSpec
from reddwarf.engines.mariadb import admin, config
from reddwarf.engines.mariadb.admin import BACKUP_ACCOUNT_HOST, Cursor, refusals, session
from reddwarf.engines.mariadb.config import account
from reddwarf.engines.mariadb.settings import MariadbSettings

logger = logging.getLogger(__name__)

FULL_STRATEGY = "mariadb_backup"
INCREMENTAL_STRATEGY = "mariadb_backup_incremental"
# What mariadb-backup 10.11 needs, measured: RELOAD (BACKUP STAGE, FLUSH), PROCESS (InnoDB status, the
# processlist), BINLOG MONITOR (SHOW MASTER STATUS, for the binlog position and GTID when binlogging is on).
# LOCK TABLES is not needed (backup locks replaced it); SLAVE MONITOR only with --slave-info.
BACKUP_PRIVILEGES = ("RELOAD", "PROCESS", "BINLOG MONITOR")
LSN_DIR = "lsn"
CHECKPOINTS = f"{LSN_DIR}/xtrabackup_checkpoints"
INFO = f"{LSN_DIR}/xtrabackup_info"
RESTORE_DIR = "restore"
LIVE_TIMEOUT = 5.0
ER_CANNOT_USER = 1396

_LSN_MAX = 1 << 64
# A value's bound: a binlog position with a GTID for each of many domains fits.
_FIELD_MAX = 4096
_GTID = re.compile(r"^\d{1,10}-\d{1,10}-\d{1,20}(,\d{1,10}-\d{1,10}-\d{1,20})*$")
_BINLOG_POS = re.compile(
    r"^filename '(?P<file>[^'\n]{1,255})', position '(?P<position>\d{1,20})'"
    r"(?:, GTID of the last change '(?P<gtid>[^'\n]*)')?"
)
_EXTRACT = (
    'set -eu; if [ "$2" = 0 ]; then rm -rf -- "$1"; fi; rm -rf -- "$1/$2"; mkdir -p -m 0700 -- "$1/$2"; '
    'exec "$3" -x -C "$1/$2"'
)


# -- the backup account ---------------------------------------------------------------------------------


def ensure_backup_account(cursor: Cursor, os_user: str) -> None:
    """Make `'<os_user>'@'localhost' IDENTIFIED VIA unix_socket` with exactly `BACKUP_PRIVILEGES`; idempotent.

    Why an account without a password is safe here: `unix_socket` admits a connection only from a process
    whose OS user (SO_PEERCRED, read by the server) is the account's name, and `localhost` (with
    skip_name_resolve) matches only the unix socket, whose directory only that OS user (and root) can
    enter. That OS user owns the data directory: it can read every table, the `mysql.*` files with the
    password hashes included, whatever this account could show it. The account adds nothing it could not
    already have, and it lets mariadb-backup, run as that user, log in without any secret that user could
    read. It can reload (BACKUP STAGE), see sessions and the binlog position; it cannot read or write data
    through SQL, manage accounts or change settings. Every other passwordless account is still dropped at
    install and locked by `admin.secure_accounts`, which knows this one.
    """
    who = account(os_user, BACKUP_ACCOUNT_HOST)
    with refusals("inspect the backup account"):
        cursor.execute(
            "SELECT Priv FROM mysql.global_priv WHERE User = %s AND Host = %s", (os_user, BACKUP_ACCOUNT_HOST)
        )
        row = cursor.fetchone()
    priv = _json(row[0]) if row is not None else None
    with refusals("set up the backup account"):
        if priv is None:
            try:
                cursor.execute(f"CREATE USER {who} IDENTIFIED VIA {admin.SOCKET_PLUGIN}")
            except pymysql.err.OperationalError as exc:
                if not exc.args or exc.args[0] != ER_CANNOT_USER:
                    raise
        elif not admin.socket_only(priv) or priv.get("account_locked"):
            cursor.execute(f"ALTER USER {who} IDENTIFIED VIA {admin.SOCKET_PLUGIN} ACCOUNT UNLOCK")
        # Exactly these privileges, whatever a tenant's root granted it on its databases meanwhile.
        cursor.execute(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who}")
        cursor.execute(f"GRANT {', '.join(BACKUP_PRIVILEGES)} ON *.* TO {who}")


def drop_other_backup_accounts(cursor: Cursor, os_user: str) -> list[str]:
    """Drop the socket-only accounts at localhost of any OS user but `os_user` (a restored server's source's)."""
    with refusals("list socket accounts"):
        cursor.execute("SELECT User, Priv FROM mysql.global_priv WHERE Host = %s", (BACKUP_ACCOUNT_HOST,))
        rows = cursor.fetchall()
    dropped: list[str] = []
    for user, priv_text in rows:
        priv = _json(priv_text)
        if user == os_user or not admin.socket_only(priv):
            continue
        with refusals(f"drop the socket account {user!r}"):
            cursor.execute(f"DROP USER IF EXISTS {account(user, BACKUP_ACCOUNT_HOST)}")
        dropped.append(user)
    if dropped:
        logger.info("dropped the socket accounts %s of another instance", dropped)
    return dropped


def _json(text: object) -> dict[str, Any]:
    try:
        found = json.loads(text) if isinstance(text, str | bytes) and text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


# -- what the tool leaves behind --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoints:
    backup_type: str
    from_lsn: int
    to_lsn: int
    last_lsn: int


def _fields(raw: bytes, what: str) -> dict[str, str]:
    """`key = value` lines; keys and values bounded, anything else ignored."""
    if len(raw) > 1 << 20:
        raise PermanentError(f"mariadb-backup left an oversized {what}")
    found: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and re.fullmatch(r"[a-z_]{1,64}", key) and key not in found:
            found[key] = value.strip()[:_FIELD_MAX]
    return found


def _lsn(fields: Mapping[str, str], name: str) -> int:
    value = fields.get(name, "")
    if not value.isdigit() or int(value) >= _LSN_MAX:
        raise PermanentError(f"mariadb-backup left no valid {name} in xtrabackup_checkpoints")
    return int(value)


def parse_checkpoints(raw: bytes) -> Checkpoints:
    """`xtrabackup_checkpoints`: the backup type and its LSNs, each checked (PermanentError if unusable)."""
    fields = _fields(raw, "xtrabackup_checkpoints")
    found = Checkpoints(
        backup_type=fields.get("backup_type", ""),
        from_lsn=_lsn(fields, "from_lsn"),
        to_lsn=_lsn(fields, "to_lsn"),
        last_lsn=_lsn(fields, "last_lsn"),
    )
    if found.backup_type not in ("full-backuped", "incremental"):
        raise PermanentError(f"mariadb-backup left an unknown backup type {found.backup_type[:40]!r}")
    if not found.from_lsn <= found.to_lsn <= found.last_lsn:
        raise PermanentError("mariadb-backup left inconsistent LSNs in xtrabackup_checkpoints")
    return found


def parse_info(raw: bytes) -> dict[str, Any]:
    """What `xtrabackup_info` says of versions and the binlog position; absent or malformed fields are None."""
    fields = _fields(raw, "xtrabackup_info")
    found: dict[str, Any] = {
        "server_version": _printable(fields.get("server_version")),
        "tool_version": _printable(fields.get("tool_version")),
        "binlog_file": None,
        "binlog_position": None,
        "gtid": None,
    }
    match = _BINLOG_POS.match(fields.get("binlog_pos", ""))
    if match:
        found["binlog_file"] = _printable(match.group("file"))
        found["binlog_position"] = int(match.group("position"))
        gtid = match.group("gtid")
        # "" when the server had logged no transaction yet (a replica seeded from it follows from the first).
        if gtid is not None and (gtid == "" or _GTID.fullmatch(gtid)):
            found["gtid"] = gtid
    return found


def _printable(value: str | None) -> str | None:
    if not value or not value.isprintable():
        return None
    return value


# -- one backup -------------------------------------------------------------------------------------------


class MariadbBackupRun:
    """One `mariadb-backup --backup` of one instance (`reddwarf.engines.base.BackupRun`)."""

    def __init__(
        self, settings: MariadbSettings, version: DatastoreVersion, placement: Placement, admin_user: str,
        admin_password: Secret, parent: ParentBackup | None,
    ) -> None:
        self._settings = settings
        self._version = version
        self._placement = placement
        self._where = admin.target(placement, admin_user, admin_password, timeout=LIVE_TIMEOUT)
        self._parent_lsn = None if parent is None else parent_to_lsn(parent)
        self._tool = self._build_tool()

    @property
    def tool(self) -> ToolSpec:
        return self._tool

    def _build_tool(self) -> ToolSpec:
        paths = config.layout(self._placement)
        argv = [
            str(self._settings.backup_binary),
            "--no-defaults",  # first: no option file of the host or the instance is read
            "--backup",
            "--stream=xbstream",
            f"--user={self._placement.os_user}",
            f"--socket={paths.socket}",
            f"--datadir={paths.datadir}",
            f"--target-dir={WORK_DIR}/target",
            f"--extra-lsndir={WORK_DIR}/{LSN_DIR}",
            f"--tmpdir={WORK_DIR}",
        ]
        if self._parent_lsn is not None:
            argv.append(f"--incremental-lsn={self._parent_lsn}")
        kind = "full" if self._parent_lsn is None else "incremental"
        return ToolSpec(
            argv=tuple(argv), as_instance=True, collect=(CHECKPOINTS, INFO), description=f"mariadb-backup ({kind})"
        )

    def prepare(self) -> None:
        """Make the backup account the tool logs in with (`ensure_backup_account`)."""
        with session(self._where) as cursor:
            ensure_backup_account(cursor, self._placement.os_user)

    def observe(self, data: bytes) -> None:
        """Nothing to learn from the stream: the LSNs come from the collected files."""

    def pieces(self, shipped: Sequence[str]) -> tuple[()]:
        """No archived logs: MariaDB's incrementals are page deltas of `mariadb-backup`."""
        return ()

    def finish(self, collected: Mapping[str, bytes]) -> BackupResult:
        """The LSNs (checked against the parent's), the binlog position and GTID, the versions."""
        if CHECKPOINTS not in collected:
            raise PermanentError("mariadb-backup left no xtrabackup_checkpoints")
        points = parse_checkpoints(collected[CHECKPOINTS])
        info = parse_info(collected.get(INFO, b""))
        if self._parent_lsn is None:
            if points.backup_type != "full-backuped" or points.from_lsn != 0:
                raise PermanentError("mariadb-backup did not take a full backup")
        elif points.backup_type != "incremental" or points.from_lsn != self._parent_lsn:
            raise PermanentError(
                f"mariadb-backup's incremental starts at LSN {points.from_lsn}, its parent ends at {self._parent_lsn}"
            )
        metadata: dict[str, Any] = {
            "version": self._version.name,
            "incremental": self._parent_lsn is not None,
            "from_lsn": points.from_lsn,
            "to_lsn": points.to_lsn,
            "last_lsn": points.last_lsn,
            **info,
        }
        return BackupResult(metadata=metadata)


def parent_to_lsn(parent: ParentBackup | ChainLink) -> int:
    value = parent.metadata.get("to_lsn")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _LSN_MAX:
        raise PermanentError(f"Backup {parent.backup_id} has no LSN an incremental can start from.")
    return value


# -- the engine's backups -----------------------------------------------------------------------------------


class MariadbBackups:
    """Backups and restores of one MariaDB version (`reddwarf.engines.base.Backups`)."""

    def __init__(self, settings: MariadbSettings, version: DatastoreVersion, admin_user: str) -> None:
        self._settings = settings
        self._version = version
        self._admin_user = admin_user

    def strategies(self) -> BackupStrategies:
        return BackupStrategies(full=FULL_STRATEGY, incremental=INCREMENTAL_STRATEGY)

    def incremental_blocker(self, placement: Placement, admin_password: Secret) -> str | None:
        """None: mariadb-backup can always take an incremental, as long as the server answers."""
        where = admin.target(placement, self._admin_user, admin_password, timeout=LIVE_TIMEOUT)
        if admin.probe(where):
            return None
        return "The instance's MariaDB server does not answer; an incremental backup needs it running."

    def backup(self, placement: Placement, admin_password: Secret, parent: ParentBackup | None) -> MariadbBackupRun:
        return MariadbBackupRun(self._settings, self._version, placement, self._admin_user, admin_password, parent)

    def archive(self, placement: Placement) -> None:
        """MariaDB archives no log files for backups."""
        return None

    def restore(self, placement: Placement, chain: Sequence[ChainLink]) -> RestorePlan:
        """Unpack each link into `<scratch>/restore/<i>`; prepare, apply the increments, move into the datadir."""
        _check_chain(chain)
        paths = config.layout(placement)
        root = PurePosixPath(placement.scratch_dir) / RESTORE_DIR
        mbstream = str(self._settings.mbstream_binary)
        extract = tuple(
            ToolSpec(
                argv=("/bin/sh", "-c", _EXTRACT, "sh", str(root), str(index), mbstream),
                as_instance=True,
                stdin=True,
                description=f"mbstream -x (backup {link.backup_id})",
            )
            for index, link in enumerate(chain)
        )
        tool = str(self._settings.backup_binary)
        timeout = self._settings.restore_timeout
        base = str(root / "0")
        init = [
            CommandSpec(argv=("/bin/mkdir", "-p", "-m", "0700", paths.files_dir, paths.tmp_dir), timeout=30.0),
            CommandSpec(argv=(tool, "--no-defaults", "--prepare", f"--target-dir={base}", f"--tmpdir={root}"),
                        timeout=timeout),
        ]
        for index in range(1, len(chain)):
            init.append(CommandSpec(
                argv=(tool, "--no-defaults", "--prepare", f"--target-dir={base}",
                      f"--incremental-dir={root / str(index)}", f"--tmpdir={root}"),
                timeout=timeout,
            ))
        init.append(CommandSpec(
            argv=(tool, "--no-defaults", "--move-back", f"--target-dir={base}", f"--datadir={paths.datadir}"),
            timeout=timeout,
        ))
        init.append(CommandSpec(argv=("/bin/rm", "-rf", "--", str(root)), timeout=timeout))
        return RestorePlan(extract=extract, init=tuple(init))

    def adopt(self, placement: Placement, old_admin: Secret, new_admin: Secret) -> None:
        """Make the restored server this instance's own; idempotent (module docstring)."""
        new = admin.target(placement, self._admin_user, new_admin, timeout=LIVE_TIMEOUT)
        where = new if admin.probe(new) else admin.target(placement, self._admin_user, old_admin, timeout=LIVE_TIMEOUT)
        hosts = config.admin_hosts(placement)
        with session(where) as cursor:
            for host in hosts:
                created = _admin_missing(cursor, self._admin_user, host)
                # ALTER/CREATE ... IDENTIFIED BY PASSWORD '<native hash>': the password itself never travels.
                admin.ensure_user(cursor, UserSpec(self._admin_user, new_admin, host=host))
                if created:
                    with refusals("grant the admin its privileges"):
                        cursor.execute(
                            f"GRANT ALL PRIVILEGES ON *.* TO {account(self._admin_user, host)} WITH GRANT OPTION"
                        )
            with refusals("list the admin's hosts"):
                cursor.execute("SELECT Host FROM mysql.global_priv WHERE User = %s", (self._admin_user,))
                stale = [host for (host,) in cursor.fetchall() if host not in hosts]
            for host in stale:
                with refusals("drop the source's admin account"):
                    cursor.execute(f"DROP USER IF EXISTS {account(self._admin_user, host)}")
            drop_other_backup_accounts(cursor, placement.os_user)
            ensure_backup_account(cursor, placement.os_user)
        logger.info("instance %s: restored server adopted (admin rotated, %d stale admin hosts dropped)",
                    placement.instance_id, len(stale))

    def check(self, placement: Placement, admin_password: Secret, timeout: float) -> str:
        """`mariadb-backup --prepare` already checked the pages it applied. Here, `CHECK TABLE` on every base
        table (the tenant's and `mysql`'s): any `error` row, or a final status other than OK, is damage."""
        where = admin.target(placement, self._admin_user, admin_password, timeout=timeout)
        with session(where) as cursor:
            with refusals("list the restored tables"):
                cursor.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                    "AND table_schema NOT IN ('information_schema', 'performance_schema', 'sys') "
                    "ORDER BY table_schema, table_name")
                tables = [(str(schema), str(name)) for schema, name in cursor.fetchall()]
            for schema, name in tables:
                qualified = f"{config.quote_identifier(schema)}.{config.quote_identifier(name)}"
                with refusals(f"check the table {schema}.{name}"):
                    cursor.execute(f"CHECK TABLE {qualified}")
                    rows = [(str(kind).lower(), str(message)) for _, _, kind, message in cursor.fetchall()]
                damage = [message for kind, message in rows if kind == "error"]
                status = [message for kind, message in rows if kind == "status"]
                if damage or (status and status[-1] not in {"OK", "Table is already up to date"}):
                    raise PermanentError(
                        f"CHECK TABLE {schema}.{name} found damage: {'; '.join(damage or status)[:500]}")
        return f"mariadb-backup --prepare passed; CHECK TABLE passed on {len(tables)} tables"


def _admin_missing(cursor: Cursor, user: str, host: str) -> bool:
    with refusals("inspect the admin account"):
        cursor.execute("SELECT 1 FROM mysql.global_priv WHERE User = %s AND Host = %s", (user, host))
        return cursor.fetchone() is None


def _check_chain(chain: Sequence[ChainLink]) -> None:
    """A full backup first, then incrementals each starting where the one before ended."""
    if not chain:
        raise PermanentError("Nothing to restore: the backup chain is empty.")
    if chain[0].strategy != FULL_STRATEGY:
        raise PermanentError(f"Backup {chain[0].backup_id} is not a full mariadb-backup backup.")
    for before, link in itertools.pairwise(chain):
        if link.strategy != INCREMENTAL_STRATEGY:
            raise PermanentError(f"Backup {link.backup_id} is not a mariadb-backup incremental.")
        start = link.metadata.get("from_lsn")
        if start != parent_to_lsn(before):
            raise PermanentError(
                f"Backup {link.backup_id} does not continue backup {before.backup_id} (LSN {start} after "
                f"{before.metadata.get('to_lsn')})."
            )

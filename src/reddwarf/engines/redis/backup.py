"""Redis backups and restores: an RDB snapshot plus the ACL file (the `reddwarf.engines.base.Backups`
implementation).

Backup: `prepare()` saves the ACL users to their file (`ACL SAVE`), asks for a snapshot (`BGSAVE`) over the
admin connection and waits, with a deadline, until a save that started after the request has finished OK
(`INFO persistence`: no save in progress, the last one OK, and its start, `rdb_last_save_time`, not before
the request). The tool, run as the instance's OS user, hard-links `dump.rdb` into its work directory (Redis
replaces that file by a rename, so the link holds one complete snapshot however many saves follow), copies
the ACL file there, and streams both as a tar. Users live in the ACL file, not in the RDB. GNU tar's exit
status 1 ("file changed as we read it") is accepted: the only change the link's inode sees is its link
count, when Redis renames a newer snapshot over the other name.

Redis has no incremental backups: an incremental is refused with `NO_INCREMENTALS` before anything runs.

Restore: a Redis with `appendonly yes` ignores a `dump.rdb` beside an empty append-only directory and comes
up empty (measured on 7.0). So the snapshot is laid down as the base of a Redis 7 multi-part AOF,
`appendonlydir/appendonly.aof.1.base.rdb` with a manifest naming it (`file ... seq 1 type b`): the restored
server loads it with its normal configuration and is durable at once, with no second step to turn the AOF
on (verified on 7.0.15). The ACL file goes back into the config directory. `adopt` then rotates the admin's
password in ACL (a `#<sha256>` rule: no clear password travels) and saves the ACL file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import cast

import redis

from reddwarf import fencing
from reddwarf.domain.backup import BackupResult, BackupStrategies, ChainLink, ParentBackup, RestorePlan
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, Placement, ToolSpec
from reddwarf.engines.redis import admin, config
from reddwarf.engines.redis.admin import command, save_acl, session, text
from reddwarf.engines.redis.settings import RedisSettings

logger = logging.getLogger(__name__)

FULL_STRATEGY = "redis_rdb"
NO_INCREMENTALS = "Redis has no incremental backups: take a full backup"
RESTORE_DIR = "restore"
LIVE_TIMEOUT = 5.0
_POLL_FIRST = 0.02
_POLL_MAX = 0.5
# `$1` dump.rdb, `$2` the ACL file, `$3` tar; run in the tool's work directory.
_PACK = (
    'set -eu; ln -- "$1" dump.rdb 2>/dev/null || cp -- "$1" dump.rdb; cp -- "$2" users.acl; rc=0; '
    '"$3" -c -f - --no-recursion --warning=no-file-changed dump.rdb users.acl || rc=$?; '
    'if [ "$rc" -eq 1 ]; then rc=0; fi; exit "$rc"'
)
# `$1` the staging root, `$2` tar: only the two expected members are extracted.
_EXTRACT = (
    'set -eu; rm -rf -- "$1"; mkdir -p -m 0700 -- "$1/0"; '
    'exec "$2" -x -f - -C "$1/0" --no-same-owner --no-same-permissions dump.rdb users.acl'
)
# `$1` the staging dir, `$2` the data dir, `$3` the config dir, `$4` appenddirname, `$5` appendfilename.
_PLACE = (
    'set -eu; for f in dump.rdb users.acl; do '
    'if [ ! -f "$1/$f" ] || [ -L "$1/$f" ]; then echo "the backup holds no regular $f" >&2; exit 1; fi; done; '
    'mkdir -p -m 0700 -- "$2/$4"; '
    'mv -f -- "$1/dump.rdb" "$2/$4/$5.1.base.rdb"; '
    'printf "file %s seq 1 type b\\n" "$5.1.base.rdb" > "$2/$4/$5.manifest"; '
    'chmod 0600 -- "$1/users.acl"; mv -f -- "$1/users.acl" "$3/' + config.ACL_FILE + '"'
)


def _persistence(client: redis.Redis) -> Mapping[str, object]:
    info = cast(Callable[[str], object], client.info)("persistence")
    return cast(Mapping[str, object], info) if isinstance(info, dict) else {}


def _number(info: Mapping[str, object], name: str) -> int:
    value = info.get(name)
    try:
        return int(cast(int, value))
    except (TypeError, ValueError):
        return -1


def snapshot(client: redis.Redis, timeout: float, clock: Callable[[], float] = time.monotonic) -> int:
    """BGSAVE, and wait until a save that started after this call has finished OK; returns its start (the
    server's clock, seconds). A save already running (the server's own, or an AOF rewrite) is waited out
    first. `TemporaryError` when the deadline passes, `PermanentError` when the save fails."""
    deadline = clock() + timeout
    requested = int(client.time()[0])
    started = False
    interval = _POLL_FIRST
    while True:
        fencing.current().check()
        info = _persistence(client)
        busy = _number(info, "rdb_bgsave_in_progress") == 1
        if not started and not busy:
            try:
                command(client, "BGSAVE")
                started = True
            except redis.ResponseError as exc:  # a save or an AOF rewrite began meanwhile: wait it out
                if "progress" not in str(exc) and "child process" not in str(exc):
                    raise PermanentError(f"Redis refused to take a snapshot: {exc}") from None
        elif started and not busy:
            if text(info.get("rdb_last_bgsave_status", "")) != "ok":
                raise PermanentError(
                    "Redis could not write its snapshot (out of memory or disk space?); see the instance's log."
                )
            last = _number(info, "rdb_last_save_time")
            if last >= requested:
                return last
            started = False  # not ours (cannot happen unless the clock moved back): ask again
        if clock() >= deadline:
            raise TemporaryError(f"Redis did not finish its snapshot within {timeout:g}s.", delay=10.0)
        time.sleep(interval)
        interval = min(_POLL_MAX, interval * 1.5)


class RedisBackupRun:
    """One snapshot of one instance (`reddwarf.engines.base.BackupRun`)."""

    def __init__(
        self, settings: RedisSettings, version: DatastoreVersion, placement: Placement, admin_user: str,
        admin_password: Secret,
    ) -> None:
        self._settings = settings
        self._version = version
        self._where = admin.target(placement, admin_user, admin_password, timeout=LIVE_TIMEOUT)
        self._saved_at: int | None = None
        rdb = PurePosixPath(placement.data_dir) / config.RDB_FILE
        acl = PurePosixPath(placement.config_dir) / config.ACL_FILE
        self._tool = ToolSpec(
            argv=("/bin/sh", "-c", _PACK, "sh", str(rdb), str(acl), str(settings.tar_binary)),
            as_instance=True,
            description="tar of the Redis snapshot and ACL file",
        )

    @property
    def tool(self) -> ToolSpec:
        return self._tool

    def prepare(self) -> None:
        """ACL SAVE, then a BGSAVE waited for (`snapshot`)."""
        with session(self._where) as client:
            try:
                save_acl(client)
                self._saved_at = snapshot(client, self._settings.bgsave_timeout)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise TemporaryError(f"Redis went away while taking a snapshot: {exc}") from exc
            except redis.RedisError as exc:
                raise PermanentError(f"Redis could not take a snapshot: {exc}") from None
        logger.info("redis snapshot of %s taken (started at %s)", self._where.socket, self._saved_at)

    def observe(self, data: bytes) -> None:
        """Nothing to learn from the stream."""

    def pieces(self, shipped: Sequence[str]) -> tuple[()]:
        """No archived logs on Redis."""
        return ()

    def finish(self, collected: Mapping[str, bytes]) -> BackupResult:
        return BackupResult(metadata={"version": self._version.name, "saved_at": self._saved_at})


class RedisBackups:
    """Backups and restores of one Redis version (`reddwarf.engines.base.Backups`)."""

    def __init__(self, settings: RedisSettings, version: DatastoreVersion, admin_user: str) -> None:
        self._settings = settings
        self._version = version
        self._admin_user = admin_user

    def strategies(self) -> BackupStrategies:
        return BackupStrategies(full=FULL_STRATEGY, reason=NO_INCREMENTALS)

    def incremental_blocker(self, placement: Placement, admin_password: Secret) -> str | None:
        return NO_INCREMENTALS

    def backup(self, placement: Placement, admin_password: Secret, parent: ParentBackup | None) -> RedisBackupRun:
        if parent is not None:
            raise PermanentError(NO_INCREMENTALS)
        return RedisBackupRun(self._settings, self._version, placement, self._admin_user, admin_password)

    def archive(self, placement: Placement) -> None:
        """Redis archives no log files for backups."""
        return None

    def restore(self, placement: Placement, chain: Sequence[ChainLink]) -> RestorePlan:
        """Unpack the snapshot and ACL file; lay the snapshot down as the AOF's base; the ACL file in place."""
        if len(chain) != 1 or chain[0].strategy != FULL_STRATEGY:
            raise PermanentError(f"A Redis restore takes exactly one {FULL_STRATEGY} backup.")
        root = PurePosixPath(placement.scratch_dir) / RESTORE_DIR
        tar = str(self._settings.tar_binary)
        extract = ToolSpec(
            argv=("/bin/sh", "-c", _EXTRACT, "sh", str(root), tar),
            as_instance=True,
            stdin=True,
            description=f"tar -x (backup {chain[0].backup_id})",
        )
        place = CommandSpec(
            argv=("/bin/sh", "-c", _PLACE, "sh", str(root / "0"), placement.data_dir, placement.config_dir,
                  config.AOF_DIR, config.AOF_FILE),
            timeout=3600.0,
        )
        clean = CommandSpec(argv=("/bin/rm", "-rf", "--", str(root)), timeout=600.0)
        return RestorePlan(extract=(extract,), init=(place, clean))

    def adopt(self, placement: Placement, old_admin: Secret, new_admin: Secret) -> None:
        """The admin's password rotated to `new_admin` (its hash only) and saved; idempotent."""
        new = admin.target(placement, self._admin_user, new_admin, timeout=LIVE_TIMEOUT)
        where = new if admin.probe(new) else admin.target(placement, self._admin_user, old_admin, timeout=LIVE_TIMEOUT)
        rules = config.user_rules(config.password_hash(new_admin.reveal()), config.ADMIN_COMMANDS)
        with session(where) as client:
            # One transaction: the new password and the file that keeps it go together.
            pipe = client.pipeline(transaction=True)
            queue = cast(Callable[..., object], pipe.execute_command)
            queue("ACL", "SETUSER", self._admin_user, *rules)
            queue("ACL", "SETUSER", config.DEFAULT_USER, "reset", *config.DEFAULT_USER_RULES)
            queue("ACL", "SAVE")
            try:
                pipe.execute()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise TemporaryError(f"Redis went away while its admin password was rotated: {exc}") from exc
            except redis.RedisError as exc:
                raise TemporaryError(f"Redis could not rotate its admin password: {type(exc).__name__}") from None
        logger.info("instance %s: restored redis server adopted (admin rotated)", placement.instance_id)

    def check(self, placement: Placement, admin_password: Secret, timeout: float) -> str:
        """Redis checks the RDB's checksum as it loads it and refuses to start on a damaged one; here the
        server has finished loading (`INFO persistence`: loading:0) and answers `DBSIZE`."""
        where = admin.target(placement, self._admin_user, admin_password, timeout=timeout)
        with session(where) as client:
            try:
                loading = _number(_persistence(client), "loading")
                keys = int(text(command(client, "DBSIZE")))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise TemporaryError(f"Redis went away while the restored data was checked: {exc}") from exc
            except redis.RedisError as exc:
                raise PermanentError(f"Redis refused to check the restored data: {type(exc).__name__}") from None
        if loading > 0:
            raise TemporaryError("The restored Redis server is still loading its data.", delay=1.0)
        return f"the RDB loaded (its checksum checked); DBSIZE {keys}"

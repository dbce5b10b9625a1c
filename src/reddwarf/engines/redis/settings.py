"""Settings of the Redis engine (`REDDWARF_REDIS_*`), validated when the engine is built."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BIN_DIRS = (Path("/usr/bin"),)


class RedisSettings(BaseSettings):
    """Where Redis software lives and how much of a flavor's RAM the dataset may use.

    - `bin_dirs`: directories searched, in order, for `redis-server` (REDDWARF_REDIS_BIN_DIRS, a JSON list;
      Debian's package puts it in /usr/bin). Where two hold the same major.minor, the first wins.
    - `maxmemory_percent`: `maxmemory` as a percentage of the flavor's RAM (REDDWARF_REDIS_MAXMEMORY_PERCENT,
      default 50). The rest is headroom for the copy-on-write of RDB snapshots (backups) and AOF rewrites,
      which can double resident memory when the whole dataset is written during a save, client buffers and
      fragmentation, so that the flavor's memory limit is not hit by the server's own forks (should it be
      anyway, `oom-score-adj` makes the fork child the one killed, not the server).
    - `bgsave_timeout`: seconds a backup waits for the BGSAVE it asked for (REDDWARF_REDIS_BGSAVE_TIMEOUT).
    - `tar_binary`: GNU tar, which packs the snapshot and the ACL file (REDDWARF_REDIS_TAR_BINARY).
    - `version_probe_timeout`: seconds allowed to `redis-server --version` during discovery.
    - `accounts_timeout`: seconds a live accounts call (list users, create a user, ...) may take to connect
      and per command (REDDWARF_REDIS_ACCOUNTS_TIMEOUT).
    - `root_superuser`: give the tenant's `root` every command (REDDWARF_REDIS_ROOT_SUPERUSER, default false),
      CONFIG SET of paths, bind and port, MODULE, REPLICAOF and SHUTDOWN included. Turn this on only where
      the runtime isolates each instance like a VM; off, root has the commands of docs/root-privileges.md.
    """

    model_config = SettingsConfigDict(env_prefix="REDDWARF_REDIS_", extra="ignore")

    bin_dirs: list[Path] = Field(default_factory=lambda: list(DEFAULT_BIN_DIRS))
    maxmemory_percent: int = Field(default=50, ge=10, le=90)
    bgsave_timeout: float = Field(default=3600.0, gt=0)
    tar_binary: Path = Path("/bin/tar")
    version_probe_timeout: float = Field(default=10.0, gt=0)
    accounts_timeout: float = Field(default=5.0, gt=0)
    root_superuser: bool = False

    @field_validator("bin_dirs")
    @classmethod
    def _absolute(cls, value: list[Path]) -> list[Path]:
        for path in value:
            if not path.is_absolute():
                raise ValueError(f"must hold absolute paths, got {path}")
        return value

    @field_validator("tar_binary")
    @classmethod
    def _absolute_binary(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"must be an absolute path, got {value}")
        return value

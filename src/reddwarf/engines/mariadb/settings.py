"""Settings of the MariaDB engine (`REDDWARF_MARIADB_*`), validated when the engine is built."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SERVER_BINARY = Path("/usr/sbin/mariadbd")
DEFAULT_INSTALL_DB_BINARY = Path("/usr/bin/mariadb-install-db")
DEFAULT_BASEDIR = Path("/usr")
DEFAULT_BACKUP_BINARY = Path("/usr/bin/mariadb-backup")
DEFAULT_MBSTREAM_BINARY = Path("/usr/bin/mbstream")


class MariadbSettings(BaseSettings):
    """Where the MariaDB server software lives (Debian's `mariadb-server` package by default).

    - `server_binary`: the `mariadbd` program (REDDWARF_MARIADB_SERVER_BINARY); its `--version` names the
      datastore version ("10.11") and number ("10.11.18").
    - `install_db_binary`: `mariadb-install-db`, which creates the system tables of a new data directory
      (REDDWARF_MARIADB_INSTALL_DB_BINARY).
    - `basedir`: the installation prefix handed to `mariadb-install-db --basedir` (REDDWARF_MARIADB_BASEDIR).
    - `backup_binary`, `mbstream_binary`: `mariadb-backup` and `mbstream` of the same release as the server
      (REDDWARF_MARIADB_BACKUP_BINARY, REDDWARF_MARIADB_MBSTREAM_BINARY).
    - `restore_timeout`: seconds each restore command (prepare, move into place) may take
      (REDDWARF_MARIADB_RESTORE_TIMEOUT).
    - `accounts_timeout`: seconds a live accounts call (list users, create a database, ...) may take to
      connect and per statement; writes get at least 30 s (REDDWARF_MARIADB_ACCOUNTS_TIMEOUT).
    - `root_superuser`: give the tenant's `root@%` ALL PRIVILEGES ON *.* WITH GRANT OPTION
      (REDDWARF_MARIADB_ROOT_SUPERUSER, default false): writes to `mysql.*` (Reddwarf's admin account
      included), plugins, SET GLOBAL of log files, replication. Turn this on only where the runtime isolates
      each instance like a VM; off, root has the privileges of docs/root-privileges.md.
    """

    model_config = SettingsConfigDict(env_prefix="REDDWARF_MARIADB_", extra="ignore")

    server_binary: Path = DEFAULT_SERVER_BINARY
    install_db_binary: Path = DEFAULT_INSTALL_DB_BINARY
    basedir: Path = DEFAULT_BASEDIR
    backup_binary: Path = DEFAULT_BACKUP_BINARY
    mbstream_binary: Path = DEFAULT_MBSTREAM_BINARY
    restore_timeout: float = Field(default=6 * 3600.0, gt=0)
    version_probe_timeout: float = Field(default=10.0, gt=0)
    accounts_timeout: float = Field(default=5.0, gt=0)
    root_superuser: bool = False

    @field_validator("server_binary", "install_db_binary", "basedir", "backup_binary", "mbstream_binary")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"must be an absolute path, got {value}")
        return value

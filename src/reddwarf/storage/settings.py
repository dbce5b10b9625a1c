"""Settings of backup storage (`REDDWARF_BACKUP_*`), validated once when the storage is built.

Every field names its environment variable: `target` is `REDDWARF_BACKUP_TARGET`, and so on. The backup
directory and the key directory default to the control plane's own 0700 directory inside the state dir, so
that no instance's OS user (which a tenant with root on its database can run code as) ever reads a backup
or a backup key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reddwarf.settings import CONTROL_DIR_NAME

BACKUPS_DIR_NAME = "backups"
KEYS_DIR_NAME = "backup-keys"
MIB = 1 << 20


class BackupStorageSettings(BaseSettings):
    """Where backups are stored and how: compression, chunking, encryption."""

    model_config = SettingsConfigDict(env_prefix="REDDWARF_BACKUP_", extra="ignore")

    target: Literal["filesystem", "s3"] = "filesystem"
    # The filesystem target's root; None: `<state_dir>/control/backups` (see `backup_dir`).
    dir: Path | None = None

    # The s3 target: endpoint (None: AWS's own), bucket, a key prefix inside it, and credentials (None:
    # boto3's usual chain: environment, shared files, instance profile).
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    # zstd level 1 with 2 workers compresses text at 520-736 MB/s on 2 cores; level 3 at only 130-250 MB/s.
    compression_level: int = 1
    # zstd worker threads; 0 compresses in the writer's own thread.
    compression_threads: int = 2
    # Stored chunks (each checksummed, and sealed when encrypting) are this many MiB of compressed data.
    chunk_mib: int = 4

    # Seal every chunk with AES-256-GCM under a per-backup data key wrapped by the keys in `key_dir`.
    encrypt: bool = False
    # None: `<state_dir>/control/backup-keys` (see `key_directory`). Losing it loses every encrypted backup.
    key_dir: Path | None = None

    @field_validator("dir", "key_dir")
    @classmethod
    def _absolute_or_none(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("compression_level")
    @classmethod
    def _level(cls, value: int) -> int:
        if not 1 <= value <= 19:
            raise ValueError("must be a zstd level from 1 (fastest, the default) to 19")
        return value

    @field_validator("compression_threads")
    @classmethod
    def _threads(cls, value: int) -> int:
        if not 0 <= value <= 64:
            raise ValueError("must be from 0 (compress in the writer's thread) to 64 zstd worker threads")
        return value

    @field_validator("chunk_mib")
    @classmethod
    def _chunk(cls, value: int) -> int:
        if not 1 <= value <= 64:
            raise ValueError("must be from 1 to 64 (MiB of compressed data per stored chunk)")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if value and any(part in {"", ".", ".."} for part in value.split("/")):
            raise ValueError("must be a '/'-separated key prefix without empty, '.' or '..' parts")
        return value

    @model_validator(mode="after")
    def _s3_complete(self) -> BackupStorageSettings:
        if self.target == "s3" and not self.s3_bucket:
            raise ValueError("REDDWARF_BACKUP_S3_BUCKET is required when REDDWARF_BACKUP_TARGET is s3")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "REDDWARF_BACKUP_S3_ACCESS_KEY_ID and REDDWARF_BACKUP_S3_SECRET_ACCESS_KEY go together: set both "
                "or neither (then boto3's usual credential chain applies)"
            )
        return self

    @property
    def chunk_bytes(self) -> int:
        return self.chunk_mib * MIB

    def backup_dir(self, state_dir: Path) -> Path:
        """The filesystem target's root: `dir`, or the backups directory inside the control dir."""
        return self.dir if self.dir is not None else state_dir / CONTROL_DIR_NAME / BACKUPS_DIR_NAME

    def key_directory(self, state_dir: Path) -> Path:
        """Where the control plane's backup keys live: `key_dir`, or inside the control dir."""
        return self.key_dir if self.key_dir is not None else state_dir / CONTROL_DIR_NAME / KEYS_DIR_NAME


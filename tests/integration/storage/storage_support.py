"""Backup targets for the storage tests, with a way to see the unfinished writes each one holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer

from reddwarf.storage.base import Storage
from reddwarf.storage.filesystem import FilesystemStorage
from reddwarf.storage.naming import TEMPORARY_MARK
from reddwarf.storage.s3 import S3Storage


@dataclass(frozen=True)
class Target:
    storage: Storage
    # The unfinished writes under a prefix: temporaries of the filesystem target, S3 multipart uploads.
    unfinished: Callable[[str], list[str]]


def filesystem_target(root: Path) -> Target:
    def unfinished(prefix: str) -> list[str]:
        start = root / prefix
        return sorted(str(p.relative_to(root)) for p in start.rglob(f"{TEMPORARY_MARK}*")) if start.exists() else []

    return Target(FilesystemStorage(root), unfinished)


def s3_target(server: MotoServer, bucket: str, prefix: str = "deployment/one") -> Target:
    storage = S3Storage(server.endpoint_url, bucket, prefix, REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY,
                        part_bytes=5 << 20)
    client = server.client

    def unfinished(key_prefix: str) -> list[str]:
        answer = client.list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}/{key_prefix}")
        return sorted(upload["Key"] for upload in answer.get("Uploads", []))

    return Target(storage, unfinished)

"""The `s3` backup target: objects in one bucket under a key prefix, through boto3 (the only module here that
imports boto3 or botocore).

A write is a multipart upload, created when the writer opens and fed parts of at least 8 MiB (the part size
doubles every 1,000 parts, so the 10,000-part limit of S3 is never the limit of a backup); `commit()`
completes it, `abort()` aborts it, and an object smaller than one part is stored with one PUT instead.
An upload never completed (a killed worker) is invisible to `read` and `keys`; `delete_prefix` aborts it.

Errors: a connection that fails or times out, or an answer of S3's "try again" kind (5xx, SlowDown),
raises `TemporaryError`; a missing object `ArtifactMissing`; anything else `PermanentError`. Credentials go
to boto3 only: they are neither kept here nor logged, and locations carry none.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions

from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.storage.base import ArtifactMissing, Storage
from reddwarf.storage.naming import check_key, check_prefix
from reddwarf.storage.settings import BackupStorageSettings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

MIB = 1 << 20
PART_BYTES = 8 * MIB
_PARTS_PER_DOUBLING = 1000
_DELETE_BATCH = 1000
_MISSING = {"NoSuchKey", "404", "NotFound"}
_RETRYABLE = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling", "RequestLimitExceeded"}


class S3Storage:
    """Objects in `bucket` under `prefix` (see the module docstring)."""

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        prefix: str = "",
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        part_bytes: int = PART_BYTES,
    ) -> None:
        if part_bytes < 5 * MIB:
            raise ValueError("S3 parts are at least 5 MiB")
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._part_bytes = part_bytes
        config = botocore.config.Config(
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            # Path-style addressing for S3-compatible servers (MinIO, Ceph, moto) reached by endpoint URL.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    @classmethod
    def from_settings(cls, settings: BackupStorageSettings) -> S3Storage:
        if not settings.s3_bucket:
            raise ValueError("REDDWARF_BACKUP_S3_BUCKET is required for the s3 backup target")
        secret = settings.s3_secret_access_key
        return cls(
            endpoint_url=settings.s3_endpoint_url,
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=None if secret is None else secret.get_secret_value(),
        )

    @property
    def name(self) -> str:
        return "s3"

    @property
    def bucket(self) -> str:
        return self._bucket

    def location(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._full(key)}"

    def open_write(self, key: str) -> _S3Writer:
        return _S3Writer(self, self._full(key))

    def read(self, key: str, piece: int = 1 << 20) -> Iterator[bytes]:
        full = self._full(key)
        with self._errors("reading", full):
            body = self._client.get_object(Bucket=self._bucket, Key=full)["Body"]
        try:
            while True:
                with self._errors("reading", full):
                    data = body.read(piece)
                if not data:
                    return
                yield data
        finally:
            body.close()

    def put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        with self._errors("writing", full):
            self._client.put_object(Bucket=self._bucket, Key=full, Body=data)

    def get(self, key: str) -> bytes:
        return b"".join(self.read(key))

    def size(self, key: str) -> int:
        full = self._full(key)
        with self._errors("looking up", full):
            return int(self._client.head_object(Bucket=self._bucket, Key=full)["ContentLength"])

    def keys(self, prefix: str) -> list[str]:
        check_prefix(prefix, allow_empty=True)
        strip = len(self._full_prefix(""))
        return sorted(key[strip:] for key in self._object_keys(self._full_prefix(prefix)))

    def delete(self, key: str) -> None:
        full = self._full(key)
        with self._errors("deleting", full):
            self._client.delete_object(Bucket=self._bucket, Key=full)

    def delete_prefix(self, prefix: str) -> int:
        """Deletes the objects under `prefix` and aborts the multipart uploads left under it."""
        check_prefix(prefix, allow_empty=False)
        full_prefix = self._full_prefix(prefix)
        count = self._abort_uploads(full_prefix)
        keys = self._object_keys(full_prefix)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            with self._errors("deleting under", full_prefix):
                answer = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            failed = answer.get("Errors", [])
            if failed:
                first = failed[0]
                raise PermanentError(
                    f"S3 refused to delete {len(failed)} objects under s3://{self._bucket}/{full_prefix}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            count += len(batch)
        return count

    @contextlib.contextmanager
    def _errors(self, action: str, full_key: str) -> Iterator[None]:
        """botocore's errors as Reddwarf's: temporary, missing, or permanent (see the module docstring)."""
        where = f"s3://{self._bucket}/{full_key}"
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            raise _client_error(exc, action, where, self._bucket) from None
        except (
            botocore.exceptions.ConnectionError,
            botocore.exceptions.HTTPClientError,
            botocore.exceptions.IncompleteReadError,
        ) as exc:
            raise TemporaryError(f"S3 could not be reached while {action} {where}: {exc}", delay=5.0) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise PermanentError(f"S3 failed while {action} {where}: {exc}") from None

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def _full_prefix(self, prefix: str) -> str:
        return f"{self._prefix}/{prefix}" if self._prefix else prefix

    def _object_keys(self, full_prefix: str) -> list[str]:
        keys: list[str] = []
        with self._errors("listing", full_prefix):
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=full_prefix
            ):
                keys.extend(item["Key"] for item in page.get("Contents", []) if "Key" in item)
        return keys

    def _abort_uploads(self, full_prefix: str) -> int:
        uploads: list[tuple[str, str]] = []
        with self._errors("listing uploads under", full_prefix):
            for page in self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self._bucket, Prefix=full_prefix
            ):
                uploads.extend(
                    (u["Key"], u["UploadId"]) for u in page.get("Uploads", []) if "Key" in u and "UploadId" in u
                )
        for key, upload_id in uploads:
            with self._errors("aborting the upload of", key), contextlib.suppress(ArtifactMissing):
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        if uploads:
            log.info("aborted %d unfinished uploads under s3://%s/%s", len(uploads), self._bucket, full_prefix)
        return len(uploads)


def _client_error(exc: botocore.exceptions.ClientError, action: str, where: str, bucket: str) -> Exception:
    error: dict[str, Any] = dict(exc.response.get("Error", {}))
    code = str(error.get("Code", ""))
    message = str(error.get("Message", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in _MISSING or code == "NoSuchUpload":
        what = "object" if code != "NoSuchUpload" else "unfinished upload of"
        return ArtifactMissing(f"backup {what} {where} is missing")
    if code == "NoSuchBucket":
        return PermanentError(f"the backup bucket {bucket} does not exist")
    if status >= 500 or code in _RETRYABLE:
        return TemporaryError(f"S3 answered {code or status} while {action} {where}: {message}", delay=5.0)
    return PermanentError(f"S3 refused {action} {where}: {code or status} {message}".rstrip())


class _S3Writer:
    """One multipart upload (see the module docstring)."""

    def __init__(self, storage: S3Storage, full_key: str) -> None:
        self._storage = storage
        self._client = storage._client
        self._key = full_key
        self._buffer = bytearray()
        self._parts: list[CompletedPartTypeDef] = []
        with storage._errors("starting the upload of", full_key):
            self._upload_id: str | None = self._client.create_multipart_upload(
                Bucket=storage.bucket, Key=full_key
            )["UploadId"]

    def write(self, data: bytes) -> None:
        if self._upload_id is None:
            raise ValueError(f"write to {self._key} after commit or abort")
        self._buffer += data
        if len(self._buffer) >= self._part_bytes():
            self._upload_part()

    def commit(self) -> None:
        upload_id = self._upload_id
        if upload_id is None:
            raise ValueError(f"commit of {self._key} after commit or abort")
        bucket = self._storage.bucket
        if not self._parts:
            # Smaller than a part: one PUT (S3 completes no upload without parts).
            with self._storage._errors("writing", self._key):
                self._client.put_object(Bucket=bucket, Key=self._key, Body=bytes(self._buffer))
            self.abort()
            return
        if self._buffer:
            self._upload_part()
        with self._storage._errors("completing the upload of", self._key):
            self._client.complete_multipart_upload(
                Bucket=bucket, Key=self._key, UploadId=upload_id, MultipartUpload={"Parts": self._parts}
            )
        self._upload_id = None

    def abort(self) -> None:
        """Aborts the upload; nothing after a commit."""
        upload_id, self._upload_id = self._upload_id, None
        self._buffer = bytearray()
        if upload_id is None:
            return
        with self._storage._errors("aborting the upload of", self._key), contextlib.suppress(ArtifactMissing):
            self._client.abort_multipart_upload(Bucket=self._storage.bucket, Key=self._key, UploadId=upload_id)

    def _part_bytes(self) -> int:
        return self._storage._part_bytes << (len(self._parts) // _PARTS_PER_DOUBLING)

    def _upload_part(self) -> None:
        assert self._upload_id is not None
        number = len(self._parts) + 1
        with self._storage._errors("uploading a part of", self._key):
            answer = self._client.upload_part(
                Bucket=self._storage.bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number,
                Body=bytes(self._buffer),
            )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})
        self._buffer = bytearray()


def _conforms(storage: S3Storage) -> Storage:
    """mypy checks here that S3Storage is a `Storage`."""
    return storage

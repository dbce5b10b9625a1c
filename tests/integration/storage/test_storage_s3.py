"""The s3 target against a real S3-protocol server (moto on loopback): multipart uploads of several parts,
aborted uploads, the errors a tenant and an operator see, and credentials that never show."""

from __future__ import annotations

import hashlib
import logging
import random

import pytest
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer
from tests.support.server import free_port

from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.storage.artifact import ArtifactOptions, ArtifactWriter, read_artifact
from reddwarf.storage.base import ArtifactMissing
from reddwarf.storage.s3 import S3Storage
from reddwarf.storage.settings import BackupStorageSettings

MIB = 1 << 20


def storage_for(server: MotoServer, bucket: str, prefix: str = "region-one") -> S3Storage:
    return S3Storage(server.endpoint_url, bucket, prefix, REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY,
                     part_bytes=5 * MIB)


def test_a_multipart_upload_of_several_parts(moto_server: MotoServer, s3_bucket: str) -> None:
    storage = storage_for(moto_server, s3_bucket)
    data = random.Random(1).randbytes(13 * MIB)
    writer = storage.open_write("project/b1/artifact")
    for start in range(0, len(data), MIB):
        writer.write(data[start : start + MIB])
    uploads = moto_server.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == ["region-one/project/b1/artifact"]
    writer.commit()
    head = moto_server.client.head_object(Bucket=s3_bucket, Key="region-one/project/b1/artifact")
    assert head["ETag"].strip('"').endswith("-3"), "three parts: 6 MiB, 6 MiB and the last 1 MiB"
    assert storage.size("project/b1/artifact") == len(data)
    got = hashlib.sha256()
    for piece in storage.read("project/b1/artifact", piece=256 << 10):
        assert len(piece) <= 256 << 10
        got.update(piece)
    assert got.hexdigest() == hashlib.sha256(data).hexdigest()
    assert moto_server.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert storage.location("project/b1/artifact") == f"s3://{s3_bucket}/region-one/project/b1/artifact"


def test_an_artifact_of_several_parts(moto_server: MotoServer, s3_bucket: str) -> None:
    storage = storage_for(moto_server, s3_bucket)
    data = random.Random(2).randbytes(11 * MIB)
    writer = ArtifactWriter(storage, "project/b1/artifact", ArtifactOptions(chunk_bytes=MIB))
    for start in range(0, len(data), 1 << 18):
        writer.write(data[start : start + (1 << 18)])
    manifest = writer.close()
    assert len(manifest.chunks) == 12, "random data is stored as it is, plus zstd's framing: 11 full chunks and a bit"
    assert b"".join(read_artifact(storage, manifest)) == data


def test_an_aborted_multipart_upload_leaves_nothing(moto_server: MotoServer, s3_bucket: str) -> None:
    storage = storage_for(moto_server, s3_bucket)
    writer = storage.open_write("project/b1/artifact")
    writer.write(random.Random(3).randbytes(6 * MIB))
    writer.abort()
    client = moto_server.client
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []


def test_a_stale_writer_cannot_commit_after_its_upload_was_cleaned_up(moto_server: MotoServer, s3_bucket: str) -> None:
    storage = storage_for(moto_server, s3_bucket)
    stale = storage.open_write("project/b1/artifact")
    stale.write(random.Random(4).randbytes(6 * MIB))
    assert storage.delete_prefix("project/b1/") == 1
    # S3 answers NoSuchUpload (ArtifactMissing); moto answers 500 (TemporaryError: the step is retried afresh).
    with pytest.raises((ArtifactMissing, TemporaryError)):
        stale.write(b"more" * MIB)
        stale.commit()
    assert storage.keys("project/") == []


def test_an_unreachable_endpoint_is_a_temporary_error() -> None:
    storage = S3Storage(f"http://127.0.0.1:{free_port()}", "bucket", "", REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    with pytest.raises(TemporaryError, match="S3 could not be reached while reading"):
        storage.get("project/b1/artifact")
    with pytest.raises(TemporaryError):
        storage.open_write("project/b1/artifact")


def test_a_missing_bucket_is_a_permanent_error(moto_server: MotoServer) -> None:
    storage = storage_for(moto_server, "no-such-bucket")
    with pytest.raises(PermanentError, match="the backup bucket no-such-bucket does not exist"):
        storage.put("project/b1/manifest", b"x")


def test_credentials_never_show(moto_server: MotoServer, s3_bucket: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    storage = storage_for(moto_server, s3_bucket)
    storage.put("project/b1/manifest", b"x")
    writer = storage.open_write("project/b1/artifact")
    writer.write(b"y")
    storage.delete_prefix("project/")
    with pytest.raises(ArtifactMissing) as caught:
        storage.get("project/b1/manifest")
    assert SECRET_ACCESS_KEY not in caught.value.message
    assert SECRET_ACCESS_KEY not in repr(vars(storage))
    assert SECRET_ACCESS_KEY not in caplog.text


def test_built_from_settings(moto_server: MotoServer, s3_bucket: str) -> None:
    settings = BackupStorageSettings(
        target="s3", s3_endpoint_url=moto_server.endpoint_url, s3_bucket=s3_bucket, s3_prefix="/a/b/",
        s3_access_key_id=ACCESS_KEY_ID, s3_secret_access_key=SECRET_ACCESS_KEY,  # type: ignore[arg-type]
    )
    storage = S3Storage.from_settings(settings)
    storage.put("project/b1/manifest", b"x")
    assert storage.location("project/b1/manifest") == f"s3://{s3_bucket}/a/b/project/b1/manifest"
    assert storage.keys("") == ["project/b1/manifest"]

"""A backup and a restore through the s3 target, against a real S3-protocol server (moto) on loopback, with
encryption on: the objects land in the bucket under the configured prefix (sealed: no plain text of the
data in them), the restored instance has the source's rows, and deleting the backup leaves nothing in the
bucket, not even an unfinished multipart upload. The S3 secret never shows on a command line.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest

from reddwarf.client import UserRequest
from reddwarf.domain.secret import Secret
from tests.e2e.test_backups_e2e import _argv_watch
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer, running_moto_server
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses, running_plane

PASSWORD = "s3-tenant-" + secrets.token_hex(6)
PREFIX = "reddwarf/backups"
MARKER = "marker-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[MotoServer, str]]:
    with running_moto_server() as server:
        bucket = f"reddwarf-e2e-{secrets.token_hex(4)}"
        server.client.create_bucket(Bucket=bucket)
        yield server, bucket


@pytest.fixture(scope="module")
def reddwarf(s3: tuple[MotoServer, str]) -> Iterator[ReddwarfProcesses]:
    server, bucket = s3
    with running_plane(
        "e2e-s3", "127.0.98.0/24", REDDWARF_BACKUP_TARGET="s3", REDDWARF_BACKUP_S3_ENDPOINT_URL=server.endpoint_url,
        REDDWARF_BACKUP_S3_BUCKET=bucket, REDDWARF_BACKUP_S3_PREFIX=PREFIX, REDDWARF_BACKUP_S3_REGION=REGION,
        REDDWARF_BACKUP_S3_ACCESS_KEY_ID=ACCESS_KEY_ID, REDDWARF_BACKUP_S3_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        REDDWARF_BACKUP_ENCRYPT="true",
    ) as procs:
        yield procs


def _keys(server: MotoServer, bucket: str) -> list[str]:
    found = server.client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/")
    return [item["Key"] for item in found.get("Contents", [])]


def test_an_encrypted_backup_to_s3_restores_and_its_delete_leaves_nothing(
    reddwarf: ReddwarfProcesses, s3: tuple[MotoServer, str]
) -> None:
    server, bucket = s3
    with reddwarf.tenant() as client:
        created = client.create_instance(
            "s3-src", "1", 1, datastore="postgresql", version="15", databases=["app"],
            users=[UserRequest(name="alice", password=Secret(PASSWORD), databases=("app",))],
        )
        source = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        assert source.address is not None
        with psycopg.connect(host=source.address, port=5432, user="alice", password=PASSWORD, dbname="app",
                             autocommit=True, connect_timeout=5) as conn:
            conn.execute("create table t (v text)")
            conn.execute("insert into t select %s || g from generate_series(1, 500) g", (MARKER,))
        with _argv_watch([SECRET_ACCESS_KEY, PASSWORD]) as leaked:
            backup = client.backups.create_backup("s3-full", source.id)
            done = client.backups.wait_for_backup(backup.id, timeout=180)
        assert leaked == []
        assert done.locationRef is not None and done.locationRef.startswith(f"s3://{bucket}/{PREFIX}/")
        keys = [key for key in _keys(server, bucket) if backup.id in key]
        assert keys, _keys(server, bucket)
        for key in keys:  # sealed: the rows' text is in no stored object
            body = server.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert MARKER.encode() not in body
        copy = client.create_instance("s3-copy", "1", 1, backup_id=backup.id)
        restored = client.wait_for_instance(copy.id, timeout=ACTIVE_TIMEOUT)
        assert restored.address is not None
        with psycopg.connect(host=restored.address, port=5432, user="alice", password=PASSWORD, dbname="app",
                             connect_timeout=5) as conn:
            assert conn.execute("select count(*) from t where v like %s", (MARKER + "%",)).fetchone() == (500,)
        for instance_id in (source.id, restored.id):
            client.delete_instance(instance_id)
        client.backups.delete_backup(backup.id)
        client.backups.wait_for_backup_delete(backup.id, timeout=DELETE_TIMEOUT)
        assert [key for key in _keys(server, bucket) if backup.id in key] == []
        uploads = server.client.list_multipart_uploads(Bucket=bucket, Prefix=PREFIX + "/").get("Uploads", [])
        assert [u for u in uploads if backup.id in u["Key"]] == []
        for instance_id in (source.id, restored.id):
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)

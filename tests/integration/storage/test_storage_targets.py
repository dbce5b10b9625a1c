"""The obligations of every backup target (`reddwarf.storage.base`), run against each real target: a
directory, and a bucket of an S3-protocol server; and the artifact format end to end through each."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from storage_support import Target

from reddwarf.storage.artifact import (
    ArtifactOptions,
    ArtifactWriter,
    Keyring,
    get_side_file,
    put_side_file,
    read_artifact,
)
from reddwarf.storage.base import ArtifactError, ArtifactMissing


def test_small_objects(backup_target: Target) -> None:
    storage = backup_target.storage
    storage.put("b1/manifest", b"first")
    storage.put("b1/manifest", b"second")
    storage.put("b1/nested/side", b"")
    assert storage.get("b1/manifest") == b"second"
    assert storage.get("b1/nested/side") == b""
    assert storage.size("b1/manifest") == 6
    assert storage.keys("b1/") == ["b1/manifest", "b1/nested/side"]
    assert storage.keys("") == ["b1/manifest", "b1/nested/side"]
    assert storage.keys("b2/") == []
    storage.delete("b1/manifest")
    storage.delete("b1/manifest")
    assert storage.keys("b1/") == ["b1/nested/side"]


def test_nothing_is_visible_before_commit(backup_target: Target) -> None:
    storage = backup_target.storage
    writer = storage.open_write("b1/artifact")
    writer.write(b"x" * 1000)
    assert storage.keys("b1/") == []
    with pytest.raises(ArtifactMissing):
        storage.get("b1/artifact")
    writer.write(b"y" * 1000)
    writer.commit()
    assert storage.get("b1/artifact") == b"x" * 1000 + b"y" * 1000
    assert storage.keys("b1/") == ["b1/artifact"]
    assert backup_target.unfinished("b1/") == []


def test_a_commit_replaces_an_object_whole(backup_target: Target) -> None:
    storage = backup_target.storage
    storage.put("b1/artifact", b"old")
    writer = storage.open_write("b1/artifact")
    writer.write(b"new")
    assert storage.get("b1/artifact") == b"old"
    writer.commit()
    assert storage.get("b1/artifact") == b"new"


def test_abort_leaves_nothing(backup_target: Target) -> None:
    storage = backup_target.storage
    writer = storage.open_write("b1/artifact")
    writer.write(b"partial" * 1000)
    assert backup_target.unfinished("b1/") != []
    writer.abort()
    writer.abort()
    assert storage.keys("b1/") == [] and backup_target.unfinished("b1/") == []
    with pytest.raises(ArtifactMissing):
        storage.size("b1/artifact")


def test_delete_prefix_removes_objects_and_what_killed_writers_left(backup_target: Target) -> None:
    """A writer that never commits nor aborts is what a killed worker leaves: its temporary file or its
    multipart upload. `delete_prefix` removes those with the objects, and touches nothing beside the prefix."""
    storage = backup_target.storage
    storage.put("project/b1/artifact", b"done")
    storage.put("project/b1/sub/side", b"side")
    storage.put("project/b10/artifact", b"a neighbour whose name starts the same")
    abandoned = storage.open_write("project/b1/attempt-2")
    abandoned.write(b"half a backup")
    assert backup_target.unfinished("project/b1/") != []

    assert storage.delete_prefix("project/b1/") == 3
    assert storage.keys("project/b1/") == [] and backup_target.unfinished("project/b1/") == []
    assert storage.keys("project/") == ["project/b10/artifact"]
    assert storage.delete_prefix("project/b1/") == 0


def test_missing_objects(backup_target: Target) -> None:
    storage = backup_target.storage
    where = storage.location("b1/nothing")
    with pytest.raises(ArtifactMissing, match=f"backup object {where} is missing"):
        list(storage.read("b1/nothing"))
    with pytest.raises(ArtifactMissing, match="is missing"):
        storage.get("b1/nothing")
    with pytest.raises(ArtifactMissing, match="is missing"):
        storage.size("b1/nothing")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../escape", "a/../../b", "a//b", "a/./b", "trailing/",
                                 ".reddwarf-tmp-1234-x"])
def test_keys_outside_the_root_are_refused(backup_target: Target, key: str) -> None:
    storage = backup_target.storage
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.put(key, b"x")
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.open_write(key)


def test_prefixes_are_keys_ending_with_a_slash(backup_target: Target) -> None:
    storage = backup_target.storage
    for prefix in ("", "b1", "../", "/abs/"):
        with pytest.raises(ValueError, match=r"invalid storage (prefix|key)"):
            storage.delete_prefix(prefix)
    with pytest.raises(ValueError, match="invalid storage prefix"):
        storage.keys("b1")


def test_locations(backup_target: Target) -> None:
    location = backup_target.storage.location("project/b1/artifact")
    assert location.startswith(("file:///", "s3://")) and location.endswith("/project/b1/artifact")
    assert "secret" not in location


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_an_artifact_round_trip(backup_target: Target, tmp_path: Path, encrypt: bool) -> None:
    storage = backup_target.storage
    keyring = Keyring.load_or_create(tmp_path / "keys")
    rows = b"".join(b"%08d\tsome row text that compresses\n" % i for i in range(30_000))
    data = rows + random.Random(5).randbytes(300_000)
    options = ArtifactOptions(chunk_bytes=64 << 10, encrypt=encrypt)
    writer = ArtifactWriter(storage, "project/b1/artifact", options, keyring)
    for start in range(0, len(data), 65536):
        writer.write(data[start : start + 65536])
    manifest = writer.close()
    manifest = put_side_file(storage, manifest, "backup_manifest", "project/b1/backup_manifest", b"{}", keyring)
    assert len(manifest.chunks) > 2
    assert storage.size("project/b1/artifact") == manifest.stored_bytes
    assert b"".join(read_artifact(storage, manifest, keyring)) == data
    assert get_side_file(storage, manifest, "backup_manifest", keyring) == b"{}"

    storage.put("project/b1/artifact", storage.get("project/b1/artifact")[: manifest.stored_bytes // 2])
    with pytest.raises(ArtifactError, match="is truncated"):
        b"".join(read_artifact(storage, manifest, keyring))
    storage.delete("project/b1/artifact")
    with pytest.raises(ArtifactMissing, match="is missing"):
        b"".join(read_artifact(storage, manifest, keyring))


def test_an_aborted_artifact_leaves_nothing(backup_target: Target) -> None:
    writer = ArtifactWriter(backup_target.storage, "project/b1/artifact", ArtifactOptions(chunk_bytes=4096))
    writer.write(bytes(range(256)) * 1000)
    writer.abort()
    assert backup_target.storage.keys("project/") == [] and backup_target.unfinished("project/") == []

"""The artifact format over an in-memory target: round trips, chunk boundaries, and every kind of damage a
stored artifact can suffer (flipped byte, truncation, missing object, reordered or spliced chunks, a key that
is not there) ending in an `ArtifactError` that says what failed, before any damaged byte is used."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import pytest
import zstandard
from tests.fakes.storage import MemoryStorage

from reddwarf.domain.errors import PermanentError
from reddwarf.storage.artifact import (
    ArtifactOptions,
    ArtifactWriter,
    Keyring,
    Manifest,
    get_side_file,
    put_side_file,
    read_artifact,
)
from reddwarf.storage.base import ArtifactError, ArtifactMissing
from reddwarf.storage.manifest import StoredChunk

KEY = "backups/b1/artifact"
# Deterministic output (no zstd workers) and small chunks, so that a test knows where chunks start and end.
SMALL = ArtifactOptions(level=1, threads=0, chunk_bytes=4096)
SEALED = dataclasses.replace(SMALL, encrypt=True)


def payload(size: int = 150_000, seed: int = 7) -> bytes:
    """Half text (compressible), half random bytes: several chunks of 4 KiB once compressed."""
    rng = random.Random(seed)
    text = b"".join(b"%d\t%d\t%d\t          \n" % (i, i // 100, rng.randint(-5000, 5000)) for i in range(size // 40))
    noise = rng.randbytes(size // 2)
    return (text + noise)[:size]


def store(storage: MemoryStorage, data: bytes, options: ArtifactOptions = SMALL, keyring: Keyring | None = None,
          pieces: tuple[int, ...] = (1, 10, 1000, 70_000)) -> Manifest:
    """Writes `data` in pieces of varying sizes (small ones are joined, large ones queued as they are)."""
    writer = ArtifactWriter(storage, KEY, options, keyring)
    offset, turn = 0, 0
    while offset < len(data):
        size = pieces[turn % len(pieces)]
        writer.write(data[offset : offset + size])
        offset += size
        turn += 1
    return writer.close()


def restore(storage: MemoryStorage, manifest: Manifest, keyring: Keyring | None = None) -> bytes:
    return b"".join(read_artifact(storage, manifest, keyring))


def chunk_spans(manifest: Manifest) -> list[tuple[int, int]]:
    spans, start = [], 0
    for chunk in manifest.chunks:
        spans.append((start, start + chunk.size))
        start += chunk.size
    return spans


def consumed_before_error(storage: MemoryStorage, manifest: Manifest, keyring: Keyring | None = None
                          ) -> tuple[bytes, ArtifactError]:
    got = bytearray()
    with pytest.raises(ArtifactError) as caught:
        for piece in read_artifact(storage, manifest, keyring):
            got += piece
    return bytes(got), caught.value


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.load_or_create(tmp_path / "backup-keys")


def test_round_trip_without_encryption() -> None:
    storage, data = MemoryStorage(), payload()
    manifest = store(storage, data)
    assert len(manifest.chunks) > 5
    assert all(c.size == SMALL.chunk_bytes for c in manifest.chunks[:-1])
    assert 0 < manifest.chunks[-1].size <= SMALL.chunk_bytes
    assert manifest.raw_bytes == len(data)
    assert manifest.stored_bytes == len(storage.objects[KEY]) == sum(c.size for c in manifest.chunks)
    assert manifest.stored_sha256 == hashlib.sha256(storage.objects[KEY]).hexdigest()
    assert manifest.encryption is None
    assert restore(storage, manifest) == data
    assert not storage.unfinished


def test_round_trip_with_encryption(keyring: Keyring) -> None:
    storage, data = MemoryStorage(), payload()
    manifest = store(storage, data, SEALED, keyring)
    assert manifest.encryption is not None
    assert manifest.encryption.key_id == keyring.current_id
    assert len(manifest.encryption.nonce_prefix) == 4
    assert all(c.size == SEALED.chunk_bytes + 16 for c in manifest.chunks[:-1])
    assert data[:2000] not in storage.objects[KEY]
    assert restore(storage, manifest, keyring) == data


def test_the_raw_sha256_is_recorded_and_checked_when_asked_for() -> None:
    storage, data = MemoryStorage(), payload()
    manifest = store(storage, data, dataclasses.replace(SMALL, raw_sha256=True))
    assert manifest.raw_sha256 == hashlib.sha256(data).hexdigest()
    assert restore(storage, manifest) == data
    wrong = dataclasses.replace(manifest, raw_sha256="0" * 64)
    with pytest.raises(ArtifactError, match="corrupted \\(checksum mismatch of the whole stream\\)"):
        restore(storage, wrong)
    assert store(MemoryStorage(), data).raw_sha256 is None


@pytest.mark.parametrize("options", [SMALL, SEALED], ids=["plain", "encrypted"])
def test_a_zero_length_stream_is_one_final_chunk(options: ArtifactOptions, keyring: Keyring) -> None:
    storage = MemoryStorage()
    writer = ArtifactWriter(storage, KEY, options, keyring)
    writer.write(b"")
    manifest = writer.close()
    assert manifest.raw_bytes == 0 and len(manifest.chunks) == 1
    assert list(read_artifact(storage, manifest, keyring)) == []


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_compressed_output_that_fills_its_chunks_exactly(encrypt: bool, keyring: Keyring) -> None:
    """Random data is stored, not compressed: its compressed length is known, and a chunk size that divides it
    makes every chunk full, the last one included."""
    rng = random.Random(3)
    while True:
        data = rng.randbytes(rng.randint(100_000, 140_000))
        compressed = store(MemoryStorage(), data, dataclasses.replace(SMALL, chunk_bytes=1 << 20)).stored_bytes
        if compressed % 4 == 0:
            break
    size = compressed // 4
    options = dataclasses.replace(SMALL, chunk_bytes=size, encrypt=encrypt)
    storage = MemoryStorage()
    manifest = store(storage, data, options, keyring)
    overhead = 16 if encrypt else 0
    assert [c.size for c in manifest.chunks] == [size + overhead] * (compressed // size)
    assert restore(storage, manifest, keyring) == data


def test_a_flipped_byte_is_found_before_its_chunk_is_used() -> None:
    storage, data = MemoryStorage(), payload()
    manifest = store(storage, data)
    start, end = chunk_spans(manifest)[2]
    intact = storage.objects[KEY]
    damaged = bytearray(intact)
    damaged[(start + end) // 2] ^= 0x01
    storage.objects[KEY] = bytes(damaged)
    got, error = consumed_before_error(storage, manifest)
    assert f"chunk 3 of {len(manifest.chunks)}" in error.message
    assert "is corrupted (checksum mismatch)" in error.message
    assert data.startswith(got)
    # Nothing of chunk 3 was used: what came out decompresses from chunks 1 and 2 alone.
    assert len(got) <= restore_prefix_length(manifest, intact, 2)


def restore_prefix_length(manifest: Manifest, intact: bytes, chunks: int) -> int:
    """How many raw bytes the first `chunks` chunks of an intact object decompress to."""
    end = chunk_spans(manifest)[chunks - 1][1]
    return len(zstandard.ZstdDecompressor().decompressobj().decompress(intact[:end]))


def test_a_flipped_byte_in_the_first_chunk_yields_nothing(keyring: Keyring) -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload(), SEALED, keyring)
    damaged = bytearray(storage.objects[KEY])
    damaged[100] ^= 0x80
    storage.objects[KEY] = bytes(damaged)
    got, error = consumed_before_error(storage, manifest, keyring)
    assert got == b""
    assert f"chunk 1 of {len(manifest.chunks)} of the artifact memory:///{KEY} is corrupted" in error.message


@pytest.mark.parametrize("cut", ["mid-chunk", "boundary", "empty"])
def test_a_truncated_object(cut: str) -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload())
    spans, total = chunk_spans(manifest), len(manifest.chunks)
    keep = {"mid-chunk": spans[2][0] + 100, "boundary": spans[2][0], "empty": 0}[cut]
    storage.objects[KEY] = storage.objects[KEY][:keep]
    complete = {"mid-chunk": 2, "boundary": 2, "empty": 0}[cut]
    _got, error = consumed_before_error(storage, manifest)
    assert f"the artifact memory:///{KEY} is truncated: {complete} of {total} chunks" in error.message


def test_bytes_after_the_last_chunk() -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload())
    storage.objects[KEY] += b"tail"
    _got, error = consumed_before_error(storage, manifest)
    assert "has 4 unexpected bytes after its last chunk" in error.message


def test_a_missing_object() -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload())
    del storage.objects[KEY]
    with pytest.raises(ArtifactMissing, match=f"backup object memory:///{KEY} is missing"):
        restore(storage, manifest)


def swap_chunks(storage: MemoryStorage, manifest: Manifest, a: int, b: int) -> Manifest:
    """Swaps two chunks in the object and in the manifest alike, so that every checksum still matches."""
    spans = chunk_spans(manifest)
    pieces = [storage.objects[KEY][s:e] for s, e in spans]
    pieces[a], pieces[b] = pieces[b], pieces[a]
    storage.objects[KEY] = b"".join(pieces)
    chunks = list(manifest.chunks)
    chunks[a], chunks[b] = chunks[b], chunks[a]
    return dataclasses.replace(manifest, chunks=tuple(chunks))


def test_swapped_chunks_are_found_by_their_checksums() -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload())
    swap_chunks(storage, manifest, 1, 2)
    _got, error = consumed_before_error(storage, manifest)
    assert f"chunk 2 of {len(manifest.chunks)}" in error.message and "checksum mismatch" in error.message


def test_swapped_chunks_with_a_matching_manifest_do_not_decrypt(keyring: Keyring) -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload(), SEALED, keyring)
    forged = swap_chunks(storage, manifest, 1, 2)
    got, error = consumed_before_error(storage, forged, keyring)
    assert f"chunk 2 of {len(manifest.chunks)}" in error.message and "does not decrypt" in error.message
    assert payload().startswith(got)


def test_dropping_the_last_chunk_from_object_and_manifest_is_detected(keyring: Keyring) -> None:
    """Truncation the manifest agrees with: the new last chunk was not sealed as the final one."""
    storage = MemoryStorage()
    manifest = store(storage, payload(), SEALED, keyring)
    last_start = chunk_spans(manifest)[-1][0]
    storage.objects[KEY] = storage.objects[KEY][:last_start]
    forged = dataclasses.replace(manifest, chunks=manifest.chunks[:-1])
    _got, error = consumed_before_error(storage, forged, keyring)
    assert f"chunk {len(forged.chunks)} of {len(forged.chunks)}" in error.message
    assert "does not decrypt" in error.message


def test_a_chunk_spliced_from_another_backup_does_not_decrypt(keyring: Keyring) -> None:
    storage, other = MemoryStorage(), MemoryStorage()
    manifest = store(storage, payload(seed=1), SEALED, keyring)
    donor = store(other, payload(seed=2), SEALED, keyring)
    start, end = chunk_spans(manifest)[1]
    d_start, d_end = chunk_spans(donor)[1]
    spliced = other.objects[KEY][d_start:d_end]
    storage.objects[KEY] = storage.objects[KEY][:start] + spliced + storage.objects[KEY][end:]
    chunks = list(manifest.chunks)
    chunks[1] = StoredChunk(size=len(spliced), sha256=hashlib.sha256(spliced).hexdigest())
    _got, error = consumed_before_error(storage, dataclasses.replace(manifest, chunks=tuple(chunks)), keyring)
    assert "chunk 2 of" in error.message and "does not decrypt" in error.message


def test_plain_chunks_reordered_with_a_matching_manifest_fail_decompression() -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload())
    forged = swap_chunks(storage, manifest, 1, 2)
    _got, error = consumed_before_error(storage, forged)
    assert "does not decompress" in error.message or "checksum mismatch of the whole stream" in error.message


def test_zstd_content_checksum_is_verified() -> None:
    """A stream whose every stored chunk matches the manifest but whose zstd content checksum does not (a
    writer that was fed other bytes than it compressed): the read fails at the end."""
    storage = MemoryStorage()
    manifest = store(storage, payload(), dataclasses.replace(SMALL, chunk_bytes=1 << 20))
    tampered = bytearray(storage.objects[KEY])
    tampered[-1] ^= 0xFF  # the frame's last 4 bytes are its xxh64 content checksum
    storage.objects[KEY] = bytes(tampered)
    forged = dataclasses.replace(
        manifest,
        chunks=(StoredChunk(size=len(tampered), sha256=hashlib.sha256(tampered).hexdigest()),),
    )
    _got, error = consumed_before_error(storage, forged)
    assert "does not decompress" in error.message


def test_a_key_id_that_is_not_in_the_keyring(keyring: Keyring, tmp_path: Path) -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload(), SEALED, keyring)
    assert manifest.encryption is not None
    elsewhere = Keyring.load_or_create(tmp_path / "other-keys")
    with pytest.raises(ArtifactError) as caught:
        restore(storage, manifest, elsewhere)
    assert caught.value.message == (
        f"backup key {manifest.encryption.key_id} is not in {tmp_path / 'other-keys'}: restore it from escrow"
    )
    with pytest.raises(ArtifactError, match="no backup keyring is configured"):
        restore(storage, manifest, None)


def test_a_key_file_replaced_by_another_key(keyring: Keyring, tmp_path: Path) -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload(), SEALED, keyring)
    key_file = keyring.directory / keyring.current_id
    key_file.write_text("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n")
    with pytest.raises(ArtifactError, match="does not open this backup's data key"):
        restore(storage, manifest, Keyring.load_or_create(keyring.directory))


def test_abort_leaves_nothing() -> None:
    storage = MemoryStorage()
    writer = ArtifactWriter(storage, KEY, SMALL)
    writer.write(payload())
    assert storage.unfinished
    writer.abort()
    writer.abort()
    assert storage.objects == {} and storage.unfinished == {}
    with pytest.raises(ValueError, match="aborted"):
        writer.write(b"more")


class FailingStorage(MemoryStorage):
    def open_write(self, key: str) -> FailingWriter:  # type: ignore[override]
        self._next_writer += 1
        return FailingWriter(self, key, self._next_writer)


class FailingWriter:
    def __init__(self, storage: MemoryStorage, key: str, number: int) -> None:
        self.storage, self.number = storage, number
        storage.unfinished[number] = bytearray()

    def write(self, data: bytes) -> None:
        raise PermanentError("no space left on the backup storage")

    def commit(self) -> None:
        raise AssertionError("never reached")

    def abort(self) -> None:
        self.storage.unfinished.pop(self.number, None)


def test_a_storage_failure_surfaces_and_the_object_is_removed() -> None:
    storage = FailingStorage()
    writer = ArtifactWriter(storage, KEY, SMALL)
    with pytest.raises(PermanentError, match="no space left"):
        for _ in range(200):
            writer.write(payload(20_000))
        writer.close()
    writer.abort()
    assert storage.unfinished == {} and storage.objects == {}


def test_progress_counters() -> None:
    storage, data = MemoryStorage(), payload()
    writer = ArtifactWriter(storage, KEY, SMALL)
    writer.write(data)
    assert writer.raw_bytes == len(data)
    manifest = writer.close()
    assert writer.stored_bytes == manifest.stored_bytes > 0


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_manifest_round_trips_through_json(encrypt: bool, keyring: Keyring) -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload(), dataclasses.replace(SMALL, encrypt=encrypt), keyring)
    manifest = put_side_file(storage, manifest, "backup_manifest", "backups/b1/backup_manifest", b"{}", keyring)
    again = Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert again == manifest
    assert restore(storage, again, keyring) == payload()


def test_an_unreadable_or_newer_manifest() -> None:
    manifest = store(MemoryStorage(), b"x")
    broken = manifest.to_dict()
    del broken["chunks"]
    with pytest.raises(ArtifactError, match="the backup's manifest is unreadable"):
        Manifest.from_dict(broken)
    with pytest.raises(ArtifactError, match="the backup's manifest is unreadable"):
        Manifest.from_dict({"format": "something-else"})
    newer = {**manifest.to_dict(), "version": 99}
    with pytest.raises(ArtifactError, match="version 99, newer than this Reddwarf reads"):
        Manifest.from_dict(newer)


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_side_files(encrypt: bool, keyring: Keyring) -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload(), dataclasses.replace(SMALL, encrypt=encrypt), keyring)
    content = b'{"PostgreSQL-Backup-Manifest-Version": 2}' * 50
    manifest = put_side_file(storage, manifest, "backup_manifest", "backups/b1/backup_manifest", content, keyring)
    manifest = put_side_file(storage, manifest, "acl", "backups/b1/acl", b"user default on", keyring)
    side = manifest.side_files["backup_manifest"]
    assert (side.encryption is not None) == encrypt
    assert (content in storage.objects[side.key]) == (not encrypt)
    assert get_side_file(storage, manifest, "backup_manifest", keyring) == content
    assert get_side_file(storage, manifest, "acl", keyring) == b"user default on"
    with pytest.raises(ArtifactError, match="the backup has no side file 'nope'"):
        get_side_file(storage, manifest, "nope", keyring)

    storage.objects[side.key] = storage.objects[side.key][:-1] + bytes([storage.objects[side.key][-1] ^ 1])
    with pytest.raises(ArtifactError, match=r"side file backup_manifest .* is corrupted \(checksum mismatch\)"):
        get_side_file(storage, manifest, "backup_manifest", keyring)
    storage.objects[side.key] = storage.objects[side.key][:10]
    with pytest.raises(ArtifactError, match="is truncated: 10 of"):
        get_side_file(storage, manifest, "backup_manifest", keyring)
    del storage.objects[side.key]
    with pytest.raises(ArtifactMissing, match="is missing"):
        get_side_file(storage, manifest, "backup_manifest", keyring)


def test_an_encrypted_side_file_is_bound_to_its_name(keyring: Keyring) -> None:
    storage = MemoryStorage()
    manifest = store(storage, payload(), SEALED, keyring)
    manifest = put_side_file(storage, manifest, "a", "backups/b1/a", b"first", keyring)
    swapped = manifest.with_side_file("b", manifest.side_files["a"])
    with pytest.raises(ArtifactError, match=r"side file b .* does not decrypt"):
        get_side_file(storage, swapped, "b", keyring)

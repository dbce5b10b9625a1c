"""The artifact format: how a tool's byte stream is stored, and how a restore gets it back, verified.

Writing (`ArtifactWriter`): the tool's raw stream is compressed as ONE continuous zstd stream (level 1 with
worker threads by default: 520-736 MB/s on 2 cores; compressing chunks separately would lose ratio), and the
compressed output is cut into chunks of `chunk_bytes`. Each chunk is sealed when encrypting, sha256'd, and
appended to one object under the artifact's key. The `Manifest` records every chunk's stored length and
sha256, the raw length and sha256, and the whole object's length and sha256.

Encryption (an operator setting): AES-256-GCM per chunk under a random data key of this backup alone, which
is stored only wrapped by the control plane's current backup key (`Keyring`; its id is in the manifest).
Chunk i's nonce is the backup's random 4-byte prefix followed by i (8 bytes, big-endian), and its associated
data binds i and whether it is the last chunk: a truncated, reordered or spliced artifact does not decrypt.

Reading (`read_artifact`): each stored chunk is checked against the manifest (length and sha256, then the
AEAD tag) before any of its bytes reach the decompressor; the raw length and sha256 are checked at the end.
Any mismatch raises `ArtifactError` whose message says what failed, in words a tenant can act on. Nothing
unverified is ever yielded.

Speed: the writer's caller (the reader of a tool's pipe) only queues data; hashing, compression, sealing and
the storage writes run in the writer's own thread (zstd, hashlib, AES-GCM and file writes release the GIL),
so a tool is slowed only when that thread falls behind by more than the queue holds.

Nothing here knows an engine: side files (`put_side_file`) are opaque small objects recorded by name.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, cast

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reddwarf.storage.base import ArtifactError, ObjectWriter, Storage
from reddwarf.storage.keyring import Keyring
from reddwarf.storage.manifest import Encryption, Manifest, SideEncryption, SideFile, StoredChunk
from reddwarf.storage.settings import BackupStorageSettings

__all__ = [
    "ArtifactOptions", "ArtifactWriter", "Keyring", "Manifest", "SideFile", "get_side_file", "put_side_file",
    "read_artifact",
]

MIB = 1 << 20
NONCE_PREFIX_BYTES = 4
TAG_BYTES = 16
_CHUNK_AAD = b"reddwarf-artifact-v1\x00"
_SIDE_AAD = b"reddwarf-side-file-v1\x00"
# The caller's writes are queued as they come when they are at least `_DIRECT` bytes (no copy), smaller ones
# joined into blocks of `_BLOCK`; at most `_QUEUE_BLOCKS` wait, so a tool runs ahead of storage by up to
# that many of its pieces before its pipe reader waits.
_DIRECT = 64 << 10
_BLOCK = 256 << 10
_QUEUE_BLOCKS = 64
_READ_PIECE = 1 * MIB


@dataclass(frozen=True, slots=True)
class ArtifactOptions:
    """zstd `level` and worker `threads`, compressed bytes per stored chunk, and whether to encrypt."""

    level: int = 1
    threads: int = 2
    chunk_bytes: int = 4 * MIB
    encrypt: bool = False
    # Also record the sha256 of the raw stream. Off by default: it costs a third of the CPU of compression
    # itself (sha256 runs at ~1.4 GB/s on one core, zstd -1 at ~0.5 GB/s per core), and the raw stream is
    # already covered end to end by zstd's content checksum (verified on every read) under the chunks' sha256.
    raw_sha256: bool = False

    @classmethod
    def from_settings(cls, settings: BackupStorageSettings) -> ArtifactOptions:
        return cls(
            level=settings.compression_level, threads=settings.compression_threads,
            chunk_bytes=settings.chunk_bytes, encrypt=settings.encrypt,
        )


def _chunk_nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(8, "big")


def _chunk_aad(index: int, final: bool) -> bytes:
    return _CHUNK_AAD + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


class ArtifactWriter:
    """Streams one artifact to `storage` under `key` (see the module docstring).

    `write()` the tool's raw bytes, then `close()` for the `Manifest` (the object is committed), or `abort()`
    (nothing is left; also after a failed `write` or `close`). One thread uses a writer; `raw_bytes` and
    `stored_bytes` may be read from any thread for progress. Errors of the storage (`TemporaryError`,
    `PermanentError`) surface from the next `write()` or from `close()`.
    """

    def __init__(
        self, storage: Storage, key: str, options: ArtifactOptions, keyring: Keyring | None = None
    ) -> None:
        if options.chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        self._storage = storage
        self._key = key
        self._options = options
        self._raw_bytes = 0
        self._stored_bytes = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._chunks: list[StoredChunk] = []
        self._held: bytes | None = None
        self._raw_hash = hashlib.sha256() if options.raw_sha256 else None
        self._stored_hash = hashlib.sha256()
        self._encryption: Encryption | None = None
        self._aead: AESGCM | None = None
        if options.encrypt:
            if keyring is None:
                raise ValueError("an encrypted artifact needs the backup keyring")
            data_key = AESGCM.generate_key(bit_length=256)
            key_id, wrapped = keyring.wrap(data_key)
            self._encryption = Encryption(
                key_id=key_id, wrapped_key=wrapped, nonce_prefix=os.urandom(NONCE_PREFIX_BYTES)
            )
            self._aead = AESGCM(data_key)
        self._error: BaseException | None = None
        self._discard = False
        self._ended = False
        self._state = "open"
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self._out: ObjectWriter = storage.open_write(key)
        self._thread = threading.Thread(target=self._run, name="artifact-writer", daemon=True)
        self._thread.start()

    @property
    def raw_bytes(self) -> int:
        """Bytes of the tool's stream accepted so far."""
        return self._raw_bytes

    @property
    def stored_bytes(self) -> int:
        """Bytes written to storage so far (compressed, sealed)."""
        return self._stored_bytes

    def write(self, raw: bytes) -> None:
        if self._state != "open":
            raise ValueError(f"write to artifact {self._key} that is {self._state}")
        self._raise_failure()
        if not raw:
            return
        self._raw_bytes += len(raw)
        if len(raw) >= _DIRECT:
            self._flush_pending()
            self._put(raw)
            return
        self._pending.append(raw)
        self._pending_size += len(raw)
        if self._pending_size >= _BLOCK:
            self._flush_pending()

    def close(self) -> Manifest:
        """Compresses and stores what is left, commits the object; the manifest to record."""
        if self._state != "open":
            raise ValueError(f"close of artifact {self._key} that is {self._state}")
        self._state = "closing"
        try:
            self._flush_pending()
            self._end_queue()
            self._thread.join()
            self._raise_failure()
            self._out.commit()
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        return Manifest(
            key=self._key,
            chunks=tuple(self._chunks),
            raw_bytes=self._raw_bytes,
            raw_sha256=self._raw_hash.hexdigest() if self._raw_hash is not None else None,
            stored_bytes=self._stored_bytes,
            stored_sha256=self._stored_hash.hexdigest(),
            compression_level=self._options.level,
            encryption=self._encryption,
        )

    def abort(self) -> None:
        """Stops and removes the unfinished object; idempotent; nothing after a successful `close()`."""
        if self._state in {"closed", "aborted"}:
            return
        self._state = "aborted"
        self._discard = True
        self._pending.clear()
        self._end_queue()
        self._thread.join()
        self._out.abort()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        block = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        self._put(block)

    def _put(self, block: bytes) -> None:
        self._queue.put(block)
        self._raise_failure()

    def _end_queue(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put(None)

    def _run(self) -> None:
        """The writer's thread: takes blocks until the end mark, always (after a failure too: the caller
        never waits on a full queue), and records the first failure for the caller to raise."""
        try:
            compressor = zstandard.ZstdCompressor(
                level=self._options.level, threads=self._options.threads, write_checksum=True
            )
            chunker = compressor.chunker(chunk_size=self._options.chunk_bytes)
        except BaseException as exc:  # noqa: BLE001 - the thread's boundary: the caller raises it
            self._error = exc
        while (block := self._queue.get()) is not None:
            if self._error is not None or self._discard:
                continue
            try:
                if self._raw_hash is not None:
                    self._raw_hash.update(block)
                for chunk in chunker.compress(block):
                    self._push(chunk)
            except BaseException as exc:  # noqa: BLE001 - the thread's boundary: the caller raises it
                self._error = exc
        if self._error is not None or self._discard:
            return
        try:
            for chunk in chunker.finish():  # type: ignore[no-untyped-call]
                self._push(chunk)
            held, self._held = self._held, None
            self._store(held or b"", final=True)
        except BaseException as exc:  # noqa: BLE001 - the thread's boundary: the caller raises it
            self._error = exc

    def _push(self, chunk: bytes) -> None:
        """Stores the chunk held back before this one: only at the end is it known which one is last."""
        if self._held is not None:
            self._store(self._held, final=False)
        self._held = chunk

    def _store(self, chunk: bytes, final: bool) -> None:
        index = len(self._chunks)
        if self._aead is not None and self._encryption is not None:
            nonce = _chunk_nonce(self._encryption.nonce_prefix, index)
            chunk = self._aead.encrypt(nonce, chunk, _chunk_aad(index, final))
        self._stored_hash.update(chunk)
        self._out.write(chunk)
        self._chunks.append(StoredChunk(size=len(chunk), sha256=hashlib.sha256(chunk).hexdigest()))
        self._stored_bytes += len(chunk)


def read_artifact(storage: Storage, manifest: Manifest, keyring: Keyring | None = None) -> Iterator[bytes]:
    """The raw stream of the artifact `manifest` describes, each chunk verified before use, the whole at the
    end (see the module docstring); `ArtifactError` (`ArtifactMissing`) says what failed."""
    source = _VerifiedChunks(storage, manifest, _opener(manifest, keyring))
    where = storage.location(manifest.key)
    raw_hash = hashlib.sha256() if manifest.raw_sha256 is not None else None
    raw_bytes = 0
    reader = zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], source), read_size=_READ_PIECE)
    try:
        while True:
            try:
                data = reader.read(_READ_PIECE)
            except zstandard.ZstdError as exc:
                raise ArtifactError(f"the artifact {where} does not decompress ({exc})") from None
            if not data:
                break
            raw_bytes += len(data)
            if raw_bytes > manifest.raw_bytes:
                raise ArtifactError(f"the artifact {where} holds more data than its manifest records")
            if raw_hash is not None:
                raw_hash.update(data)
            yield data
    finally:
        reader.close()  # type: ignore[no-untyped-call]
        source.close()
    source.check_consumed()
    if raw_bytes != manifest.raw_bytes:
        raise ArtifactError(
            f"the artifact {where} is incomplete: {raw_bytes} of {manifest.raw_bytes} bytes after decompression"
        )
    if raw_hash is not None and raw_hash.hexdigest() != manifest.raw_sha256:
        raise ArtifactError(f"the artifact {where} is corrupted (checksum mismatch of the whole stream)")


def _opener(manifest: Manifest, keyring: Keyring | None) -> AESGCM | None:
    if manifest.encryption is None:
        return None
    if keyring is None:
        raise ArtifactError(
            f"the backup is encrypted with backup key {manifest.encryption.key_id}, "
            "but no backup keyring is configured"
        )
    return AESGCM(keyring.unwrap(manifest.encryption.key_id, manifest.encryption.wrapped_key))


class _VerifiedChunks:
    """A file-like source for the decompressor that hands out only the bytes of verified chunks."""

    def __init__(self, storage: Storage, manifest: Manifest, aead: AESGCM | None) -> None:
        self._manifest = manifest
        self._aead = aead
        self._where = storage.location(manifest.key)
        self._stream = storage.read(manifest.key, _READ_PIECE)
        self._incoming = bytearray()
        self._index = 0
        self._current = memoryview(b"")
        self._exhausted = False

    def read(self, size: int = -1) -> bytes:
        while not self._current:
            if self._index == len(self._manifest.chunks):
                return b""
            self._current = memoryview(self._next_chunk())
        if size < 0 or size >= len(self._current):
            data, self._current = self._current, memoryview(b"")
        else:
            data, self._current = self._current[:size], self._current[size:]
        return bytes(data)

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()

    def check_consumed(self) -> None:
        """After the zstd frame ended: every chunk was used, and nothing follows the last one."""
        total = len(self._manifest.chunks)
        if self._index < total or self._current:
            raise ArtifactError(
                f"the artifact {self._where} ends its compressed stream early: at chunk {self._index} of {total}"
            )
        extra = len(self._incoming) + sum(len(piece) for piece in self._stream)
        if extra:
            raise ArtifactError(f"the artifact {self._where} has {extra} unexpected bytes after its last chunk")

    def _next_chunk(self) -> bytes:
        total = len(self._manifest.chunks)
        expected = self._manifest.chunks[self._index]
        while len(self._incoming) < expected.size and not self._exhausted:
            piece = next(self._stream, None)
            if piece is None:
                self._exhausted = True
            else:
                self._incoming += piece
        if len(self._incoming) < expected.size:
            raise ArtifactError(f"the artifact {self._where} is truncated: {self._index} of {total} chunks")
        stored = bytes(self._incoming[: expected.size])
        del self._incoming[: expected.size]
        number = self._index + 1
        if hashlib.sha256(stored).hexdigest() != expected.sha256:
            raise ArtifactError(
                f"chunk {number} of {total} of the artifact {self._where} is corrupted (checksum mismatch)"
            )
        if self._aead is not None and self._manifest.encryption is not None:
            nonce = _chunk_nonce(self._manifest.encryption.nonce_prefix, self._index)
            try:
                stored = self._aead.decrypt(nonce, stored, _chunk_aad(self._index, number == total))
            except InvalidTag:
                raise ArtifactError(
                    f"chunk {number} of {total} of the artifact {self._where} does not decrypt: the data key "
                    "or the manifest does not belong to this artifact"
                ) from None
        self._index += 1
        return stored


def put_side_file(
    storage: Storage, manifest: Manifest, name: str, key: str, data: bytes, keyring: Keyring | None = None
) -> Manifest:
    """Stores a small object beside the artifact (encrypted iff the artifact is, under its own data key,
    bound to `name`); the manifest with it recorded under `name`."""
    encryption: SideEncryption | None = None
    stored = data
    if manifest.encryption is not None:
        if keyring is None:
            raise ValueError("an encrypted artifact's side files need the backup keyring")
        data_key = AESGCM.generate_key(bit_length=256)
        key_id, wrapped = keyring.wrap(data_key)
        nonce = os.urandom(12)
        stored = AESGCM(data_key).encrypt(nonce, data, _SIDE_AAD + name.encode())
        encryption = SideEncryption(key_id=key_id, wrapped_key=wrapped, nonce=nonce)
    storage.put(key, stored)
    side = SideFile(key=key, size=len(stored), sha256=hashlib.sha256(stored).hexdigest(), encryption=encryption)
    return manifest.with_side_file(name, side)


def get_side_file(storage: Storage, manifest: Manifest, name: str, keyring: Keyring | None = None) -> bytes:
    """The side file recorded under `name`, verified (length, sha256, then AEAD) before it is returned."""
    side = manifest.side_files.get(name)
    if side is None:
        raise ArtifactError(f"the backup has no side file {name!r}")
    where = storage.location(side.key)
    stored = storage.get(side.key)
    if len(stored) != side.size:
        raise ArtifactError(f"side file {name} ({where}) is truncated: {len(stored)} of {side.size} bytes")
    if hashlib.sha256(stored).hexdigest() != side.sha256:
        raise ArtifactError(f"side file {name} ({where}) is corrupted (checksum mismatch)")
    if side.encryption is None:
        return stored
    if keyring is None:
        raise ArtifactError(
            f"side file {name} is encrypted with backup key {side.encryption.key_id}, "
            "but no backup keyring is configured"
        )
    data_key = keyring.unwrap(side.encryption.key_id, side.encryption.wrapped_key)
    try:
        return AESGCM(data_key).decrypt(side.encryption.nonce, stored, _SIDE_AAD + name.encode())
    except InvalidTag:
        raise ArtifactError(f"side file {name} ({where}) does not decrypt: it does not belong to this backup") from None

"""The Storage protocol: where backup artifacts live (a directory, an S3 bucket), as byte streams under keys.

Obligations of an implementation:

- Keys are relative, '/'-separated paths without '.' or '..' components; the implementation maps them
  under its own root (directory, bucket prefix) and refuses anything else.
- `open_write(key)` streams an object: nothing is visible under `key` until `commit()`, and `abort()` (or a
  crash: a process killed mid-write) leaves nothing that `read` or `keys` would show as the object.
  Leftovers of writers that never committed (temporary files, S3 multipart uploads) are removed by
  `delete_prefix` under their prefix.
- `read(key)` streams an object in pieces of about `piece` bytes; a missing object raises
  `ArtifactMissing` naming the key.
- `put` / `get` are for small objects (a manifest, a side file): whole in memory.
- `location(key)` is the `locationRef` shown to tenants (`file:///...`, `s3://bucket/...`): no credential.
- Failures that may pass (a network error) raise `TemporaryError`; the others `PermanentError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from reddwarf.domain.errors import PermanentError


class ArtifactError(PermanentError):
    """A stored artifact cannot be used: missing, truncated, corrupted, or not decryptable."""


class ArtifactMissing(ArtifactError):
    pass


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class Storage(Protocol):
    @property
    def name(self) -> str:
        """`filesystem` or `s3`."""
        ...

    def location(self, key: str) -> str: ...

    def open_write(self, key: str) -> ObjectWriter: ...

    def read(self, key: str, piece: int = 1 << 20) -> Iterator[bytes]: ...

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def size(self, key: str) -> int: ...

    def keys(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object and unfinished write under `prefix` (a '/'-terminated key); how many."""
        ...

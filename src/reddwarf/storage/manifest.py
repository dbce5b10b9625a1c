"""The manifest of a stored artifact: what a restore checks every stored byte against (see `artifact`).

A manifest is written once, when the artifact is committed, into the control plane's own store (the backup
record), never only beside the artifact: whoever can alter the stored objects cannot alter what they are
checked against. `to_dict()` is JSON-safe and versioned; `from_dict()` refuses a version it does not know
and anything malformed with an `ArtifactError` a tenant can read.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reddwarf.storage.base import ArtifactError

FORMAT = "reddwarf-artifact"
VERSION = 1
COMPRESSION = "zstd"
ALGORITHM = "AES-256-GCM"


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """One stored chunk: its length at rest and the sha256 (hex) of those bytes."""

    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Encryption:
    """How an artifact's chunks are sealed: the per-backup data key wrapped by backup key `key_id`, and the
    random 4-byte nonce prefix to which each chunk's 8-byte index is appended."""

    key_id: str
    wrapped_key: bytes
    nonce_prefix: bytes
    algorithm: str = ALGORITHM


@dataclass(frozen=True, slots=True)
class SideEncryption:
    """How a side file is sealed: its own data key wrapped by backup key `key_id`, and its 12-byte nonce."""

    key_id: str
    wrapped_key: bytes
    nonce: bytes
    algorithm: str = ALGORITHM


@dataclass(frozen=True, slots=True)
class SideFile:
    """A small object stored beside the artifact (PostgreSQL's backup manifest): its key, and the length and
    sha256 (hex) of its bytes at rest."""

    key: str
    size: int
    sha256: str
    encryption: SideEncryption | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """One artifact: a single zstd stream of the tool's raw bytes, cut into `chunks` stored back to back
    under `key`. `raw_*` describe the tool's stream (`raw_sha256` only when the writer was asked for it:
    zstd's content checksum covers the raw stream anyway), `stored_*` the object at rest."""

    key: str
    chunks: tuple[StoredChunk, ...]
    raw_bytes: int
    raw_sha256: str | None
    stored_bytes: int
    stored_sha256: str
    compression_level: int
    encryption: Encryption | None = None
    side_files: Mapping[str, SideFile] = field(default_factory=dict)
    compression: str = COMPRESSION
    version: int = VERSION

    def with_side_file(self, name: str, side: SideFile) -> Manifest:
        return dataclasses.replace(self, side_files={**self.side_files, name: side})

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "key": self.key,
            "compression": {"algorithm": self.compression, "level": self.compression_level},
            "chunks": [{"size": c.size, "sha256": c.sha256} for c in self.chunks],
            "raw_bytes": self.raw_bytes,
            "raw_sha256": self.raw_sha256,
            "stored_bytes": self.stored_bytes,
            "stored_sha256": self.stored_sha256,
            "encryption": None if self.encryption is None else {
                "algorithm": self.encryption.algorithm,
                "key_id": self.encryption.key_id,
                "wrapped_key": _b64(self.encryption.wrapped_key),
                "nonce_prefix": _b64(self.encryption.nonce_prefix),
            },
            "side_files": {name: _side_to_dict(side) for name, side in sorted(self.side_files.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        try:
            return cls._parse(data)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
            raise ArtifactError(f"the backup's manifest is unreadable ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} manifest")
        version = int(data["version"])
        if version > VERSION:
            raise ArtifactError(
                f"the backup's manifest has version {version}, newer than this Reddwarf reads ({VERSION}): "
                "upgrade Reddwarf to restore it"
            )
        compression = data["compression"]
        if compression["algorithm"] != COMPRESSION:
            raise ValueError(f"unknown compression {compression['algorithm']!r}")
        sealed = data["encryption"]
        encryption = None if sealed is None else Encryption(
            key_id=str(sealed["key_id"]),
            wrapped_key=_unb64(sealed["wrapped_key"]),
            nonce_prefix=_unb64(sealed["nonce_prefix"]),
            algorithm=_algorithm(sealed["algorithm"]),
        )
        return cls(
            key=str(data["key"]),
            chunks=tuple(StoredChunk(size=int(c["size"]), sha256=str(c["sha256"])) for c in data["chunks"]),
            raw_bytes=int(data["raw_bytes"]),
            raw_sha256=None if data["raw_sha256"] is None else str(data["raw_sha256"]),
            stored_bytes=int(data["stored_bytes"]),
            stored_sha256=str(data["stored_sha256"]),
            compression_level=int(compression["level"]),
            encryption=encryption,
            side_files={str(name): _side_from_dict(side) for name, side in data["side_files"].items()},
            version=version,
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _algorithm(name: object) -> str:
    if name != ALGORITHM:
        raise ValueError(f"unknown encryption algorithm {name!r}")
    return ALGORITHM


def _side_to_dict(side: SideFile) -> dict[str, Any]:
    return {
        "key": side.key,
        "size": side.size,
        "sha256": side.sha256,
        "encryption": None if side.encryption is None else {
            "algorithm": side.encryption.algorithm,
            "key_id": side.encryption.key_id,
            "wrapped_key": _b64(side.encryption.wrapped_key),
            "nonce": _b64(side.encryption.nonce),
        },
    }


def _side_from_dict(data: Mapping[str, Any]) -> SideFile:
    sealed = data["encryption"]
    return SideFile(
        key=str(data["key"]),
        size=int(data["size"]),
        sha256=str(data["sha256"]),
        encryption=None if sealed is None else SideEncryption(
            key_id=str(sealed["key_id"]),
            wrapped_key=_unb64(sealed["wrapped_key"]),
            nonce=_unb64(sealed["nonce"]),
            algorithm=_algorithm(sealed["algorithm"]),
        ),
    )

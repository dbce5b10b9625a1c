"""Test-only crash points: `REDDWARF_TEST_CRASH_AT=<kind>:<step>:<before|after>` kills the worker with SIGKILL.

`before` dies just before the step runs (the journal holds every earlier step); `after` dies once the step's
work is done but before it is journaled, so the step runs again on recovery and must be idempotent.
An optional fourth field `once` makes the crash happen only if the marker file named by
`REDDWARF_TEST_CRASH_MARKER` does not exist yet (the crash creates it), so the restarted worker goes on.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Final

ENV_CRASH_AT: Final = "REDDWARF_TEST_CRASH_AT"
ENV_CRASH_MARKER: Final = "REDDWARF_TEST_CRASH_MARKER"

log = logging.getLogger(__name__)


def crash_point(kind: str, step: str, when: str) -> None:
    spec = os.environ.get(ENV_CRASH_AT)
    if not spec:
        return
    parts = spec.split(":")
    if parts[:3] != [kind, step, when]:
        return
    marker = os.environ.get(ENV_CRASH_MARKER)
    if marker:
        path = Path(marker)
        if path.exists():
            return
        path.write_text(f"{kind}:{step}:{when}\n")
    log.warning("test crash point reached: %s %s %s; killing this worker", kind, step, when)
    os.kill(os.getpid(), signal.SIGKILL)

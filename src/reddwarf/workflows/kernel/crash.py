"""Test-only crash points: `REDDWARF_TEST_CRASH_AT=<kind>:<step>:<before|after|child>` kills the worker with
SIGKILL.

`before` dies just before the step runs (the journal holds every earlier step); `after` dies once the step's
work is done but before it is journaled, so the step runs again on recovery and must be idempotent; `child`
right after the step started a child process (`reddwarf.fencing`), which goes on running; any other word, at
the point of that name the step reports (`Fence.reached`: `frozen`, while a snapshot's filesystem is frozen).
`REDDWARF_TEST_CRASH_ACTION=pause` stops the worker (SIGSTOP) instead of killing it: a worker paused past
its lease, that a test resumes with SIGCONT.
The step may end in `*` (a prefix: `repoint-*` is any `repoint-<id>`).
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
ENV_CRASH_ACTION: Final = "REDDWARF_TEST_CRASH_ACTION"

log = logging.getLogger(__name__)


def crash_point(kind: str, step: str, when: str) -> None:
    spec = os.environ.get(ENV_CRASH_AT)
    if not spec:
        return
    parts = spec.split(":")
    if len(parts) < 3 or parts[0] != kind or parts[2] != when or not _matches(parts[1], step):
        return
    marker = os.environ.get(ENV_CRASH_MARKER)
    if marker:
        path = Path(marker)
        if path.exists():
            return
        path.write_text(f"{kind}:{step}:{when}\n")
    if os.environ.get(ENV_CRASH_ACTION) == "pause":
        log.warning("test crash point reached: %s %s %s; pausing this worker", kind, step, when)
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    log.warning("test crash point reached: %s %s %s; killing this worker", kind, step, when)
    os.kill(os.getpid(), signal.SIGKILL)


def _matches(pattern: str, step: str) -> bool:
    return step.startswith(pattern[:-1]) if pattern.endswith("*") else step == pattern

"""Time and ids as the store records them: UTC epoch seconds (float) and uuid4 strings."""

from __future__ import annotations

import time
import uuid


def now() -> float:
    return time.time()


def new_id() -> str:
    return str(uuid.uuid4())

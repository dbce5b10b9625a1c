"""Which skips a test run may contain.

A test skips for one of two reasons: the thing it checks does not apply to its target (Redis has no
databases, so the conformance suite's database tests skip for Redis), or something it needs is missing on
this machine (an engine, root, cgroups, a Keystone install). The first is part of the suite's design; the
second, under CI, hides a broken install step behind a green run. `not_applicable()` marks the first kind;
`tests/conftest.py` turns every other skip into a failure when `CI` is set.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

NOT_APPLICABLE = "not applicable: "


def under_ci() -> bool:
    """True when the run is CI's (`CI` set to anything but an empty string, 0 or false)."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def not_applicable(reason: str) -> NoReturn:
    """Skip a test whose subject does not apply to its target; such skips are expected, even under CI."""
    pytest.skip(NOT_APPLICABLE + reason)


def expected(reason: str) -> bool:
    return reason.startswith(NOT_APPLICABLE) or reason.startswith("Skipped: " + NOT_APPLICABLE)

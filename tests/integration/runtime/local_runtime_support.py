"""Helpers of the local runtime's integration tests; they live in `tests.support.local_instances`, shared with
the engines' backup tests, which run real servers on the local runtime too."""

from __future__ import annotations

from tests.support.local_instances import TEST_POOL, USER_PREFIX, Instances

__all__ = ["TEST_POOL", "USER_PREFIX", "Instances"]

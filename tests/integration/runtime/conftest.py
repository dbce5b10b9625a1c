"""Fixtures for the local runtime's integration tests: real OS users, processes, cgroups and loop volumes.

Instances live under `scratch_root`, take addresses from the private pool 127.0.77.0/24, and use a
per-test cgroup parent; teardown destroys every instance and, should destroy fail, removes processes,
mounts, cgroups and OS users by hand so that nothing outlives the test.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_runtime_support import Instances

if os.geteuid() != 0:
    pytest.skip("the local runtime's integration tests need root", allow_module_level=True)


@pytest.fixture
def instances(scratch_root: Path) -> Iterator[Instances]:
    made = Instances(scratch_root)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def port() -> int:
    """A port that nothing holds right now on the test pool's first address."""
    with socket.socket() as probe:
        probe.bind(("127.0.77.1", 0))
        return int(probe.getsockname()[1])

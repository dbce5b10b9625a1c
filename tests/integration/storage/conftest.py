"""Fixtures of the backup target tests: `backup_target` is each target in turn (a directory, and a bucket of
a real S3-protocol server on loopback), with a way to see the unfinished writes it holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_support import Target, filesystem_target, s3_target
from tests.support.s3 import MotoServer, moto_server, s3_bucket

__all__ = ["moto_server", "s3_bucket"]  # pytest fixtures, used by name


@pytest.fixture(params=["filesystem", "s3"])
def backup_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "filesystem":
        return filesystem_target(tmp_path / "backups")
    server: MotoServer = request.getfixturevalue("moto_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return s3_target(server, bucket)

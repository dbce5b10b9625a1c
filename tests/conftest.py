"""Fixtures and hooks shared by every test layer.

Database servers run as unprivileged OS users that cannot traverse /root or pytest's 0700 tmp dirs,
so anything a server touches lives under `scratch_root` (/var/tmp/reddwarf-tests, 0755).

Under CI (`CI` set) a skip is a failure unless the test said its subject does not apply to its target
(`tests.support.skips.not_applicable`): a missing engine, root, cgroup controller or Keystone install must
fail the run, not shrink it. Tests kept out of a run are deselected with `-m`, never skipped. `-ra` (in
pyproject's addopts) lists every remaining skip with its reason in the summary.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.skips import expected, under_ci

pytest_plugins = ["pytester"]

SCRATCH_BASE = Path(os.environ.get("REDDWARF_TEST_SCRATCH", "/var/tmp/reddwarf-tests"))


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A fresh 0755 directory that unprivileged server users can traverse; removed afterwards."""
    SCRATCH_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
    SCRATCH_BASE.chmod(0o755)
    path = SCRATCH_BASE / secrets.token_hex(4)
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_unexpected_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (report.skipped and under_ci()):
        return
    if hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if expected(reason):
        return
    report.outcome = "failed"
    report.longrepr = f"unexpected skip under CI ({reason}): install what the test needs, or deselect it with -m"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_unexpected_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_unexpected_skip(report)
    return report

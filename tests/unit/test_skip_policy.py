"""Under CI a skip fails the run unless the test said its subject does not apply (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

TESTS = '''
import pytest
from tests.support.skips import not_applicable

def test_engine_missing():
    pytest.skip("PostgreSQL 15 is not installed")

@pytest.mark.skipif(True, reason="this host offers no cgroups")
def test_marked_skip():
    pass

def test_redis_has_no_databases():
    not_applicable("redis 7.0 does not declare databases")

def test_runs():
    pass
'''

MODULE_SKIP = '''
import pytest
pytest.skip("the local runtime's integration tests need root", allow_module_level=True)

def test_never_collected():
    pass
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_skips=TESTS)
    return pytester


def test_under_ci_a_missing_prerequisite_fails_the_run(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_inprocess("-ra", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1 and outcomes.get("skipped") == 1, outcomes
    assert outcomes.get("failed", 0) + outcomes.get("errors", outcomes.get("error", 0)) == 2, outcomes
    result.stdout.fnmatch_lines(["*unexpected skip under CI*PostgreSQL 15 is not installed*"])
    result.stdout.fnmatch_lines(["*unexpected skip under CI*no cgroups*"])
    result.stdout.fnmatch_lines(["SKIPPED*not applicable: redis 7.0 does not declare databases*"])


def test_off_ci_the_same_skips_are_listed_with_their_reasons(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest_inprocess("-ra", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["SKIPPED*PostgreSQL 15 is not installed*", "SKIPPED*no cgroups*"])


def test_under_ci_a_module_level_skip_is_a_collection_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_module_skip=MODULE_SKIP)
    result = pytester.runpytest_inprocess("-ra", "-p", "no:cacheprovider")
    assert result.ret not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    result.stdout.fnmatch_lines(["*unexpected skip under CI*need root*"])

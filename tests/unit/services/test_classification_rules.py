"""The classification rules (pure): experimental, technical preview, stable from ledger runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reddwarf.domain.capabilities import Capabilities, Capability
from reddwarf.services.classification import (
    STABLE_RUNS,
    Counts,
    Ledger,
    LedgerError,
    Level,
    Result,
    Run,
    append_runs,
    classify_runs,
    declared_names,
    run_from_outcomes,
)

P, F, U = Result.PASSED, Result.FAILED, Result.UNTESTED


def run(commit: str, *, lifecycle: Result = P, users: Result = P, databases: Result = P, full: bool = True,
        dirty: bool = False, extra: dict[str, Result] | None = None, declared: tuple[str, ...] | None = None) -> Run:
    results = {"lifecycle": lifecycle, "users": users, "databases": databases, **(extra or {})}
    return Run(commit=commit, date="2026-01-01T00:00:00Z", engine="postgresql", version="15", runtime="local",
               declared=declared if declared is not None else ("databases", "users"), results=results,
               full=full, dirty=dirty)


def test_no_run_is_experimental() -> None:
    verdict = classify_runs([])

    assert verdict.level is Level.EXPERIMENTAL
    assert "no full conformance run" in verdict.reason


def test_lifecycle_alone_is_experimental_and_the_reason_names_the_missing_capability() -> None:
    verdict = classify_runs([run("a", databases=U)])

    assert verdict.level is Level.EXPERIMENTAL
    assert "databases untested" in verdict.reason


def test_a_failed_lifecycle_is_named() -> None:
    assert "lifecycle failed" in classify_runs([run("a", lifecycle=F)]).reason


def test_every_declared_capability_passing_is_technical_preview() -> None:
    verdict = classify_runs([run("a")])

    assert verdict.level is Level.TECHNICAL_PREVIEW
    assert verdict.streak == 1


def test_undeclared_capabilities_do_not_count() -> None:
    assert classify_runs([run("a", databases=U, declared=("users",))]).level is Level.TECHNICAL_PREVIEW


def test_stable_needs_n_consecutive_distinct_commits() -> None:
    assert STABLE_RUNS == 3
    two = [run("a"), run("b")]
    same_commit = [run("a"), run("b"), run("b")]
    three = [run("a"), run("b"), run("c")]

    assert classify_runs(two).level is Level.TECHNICAL_PREVIEW
    assert classify_runs(same_commit).level is Level.TECHNICAL_PREVIEW
    assert classify_runs(three).level is Level.STABLE
    assert classify_runs(three).streak == 3


def test_a_failure_breaks_the_streak_and_the_latest_failure_demotes() -> None:
    broken = [run("a"), run("b", users=F), run("c"), run("d")]
    demoted = [run("a"), run("b"), run("c"), run("d", users=F)]

    assert classify_runs(broken).level is Level.TECHNICAL_PREVIEW
    assert classify_runs(broken).streak == 2
    assert classify_runs(demoted).level is Level.EXPERIMENTAL


def test_partial_runs_are_ignored_and_dirty_runs_qualify_nothing() -> None:
    partial = [run("a"), run("b"), run("c"), run("d", users=F, full=False)]
    dirty = [run("a", dirty=True), run("b"), run("c")]

    assert classify_runs(partial).level is Level.STABLE
    assert classify_runs(dirty).level is Level.TECHNICAL_PREVIEW
    assert classify_runs([run("x", full=False)]).level is Level.EXPERIMENTAL


def test_strategies_are_classified_on_their_own_results() -> None:
    runs = [run(c, extra={"backup:pg_basebackup": P, "replication:streaming": U},
                declared=("backup", "databases", "users", "backup:pg_basebackup", "replication:streaming"))
            for c in "abc"]
    ledger = Ledger(tuple(runs))

    assert ledger.classify_strategy("postgresql", "15", "local", "backup", "pg_basebackup").level is Level.STABLE
    assert ledger.classify_strategy("postgresql", "15", "local", "replication", "streaming").level is (
        Level.EXPERIMENTAL)
    # The version's own level needs "backup" (declared) to pass: it is untested here.
    assert ledger.classify("postgresql", "15", "local").level is Level.EXPERIMENTAL


def test_runs_are_per_engine_version_and_runtime() -> None:
    ledger = Ledger((run("a"), run("b"), run("c")))

    assert ledger.classify("postgresql", "15", "local").level is Level.STABLE
    assert ledger.classify("postgresql", "18", "local").level is Level.EXPERIMENTAL
    assert ledger.classify("postgresql", "15", "kubernetes").level is Level.EXPERIMENTAL


def test_outcome_counts_become_results_and_declared_names_include_strategies() -> None:
    caps = Capabilities(offered=frozenset({Capability.USERS, Capability.BACKUP}), backup_strategies=("dump",))
    declared = declared_names(caps)
    made = run_from_outcomes(
        engine="redis", version="7.0", number="7.0.15", runtime="local", commit="c", dirty=False,
        date="d", declared=declared,
        counts={"lifecycle": Counts(passed=5), "users": Counts(passed=1, failed=1), "backup": Counts(skipped=2)},
    )

    assert declared == ["backup", "users", "backup:dump"]
    assert made.results == {"lifecycle": P, "users": F, "backup": U, "backup:dump": U}


def test_ledger_round_trip_and_a_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    append_runs(path, [run("a"), run("b")])
    append_runs(path, [run("c")])

    assert [r.commit for r in Ledger.load(path).runs] == ["a", "b", "c"]
    assert json.loads(path.read_text().splitlines()[0])["results"]["users"] == "passed"
    assert Ledger.load(tmp_path / "missing.jsonl").runs == ()
    with path.open("a") as f:
        f.write('{"commit": "d"}\n')
    with pytest.raises(LedgerError, match=r"ledger.jsonl:4"):
        Ledger.load(path)

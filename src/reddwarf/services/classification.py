"""Datastore classification: experimental, technical preview or stable, computed from conformance runs.

The record is a ledger (`classification/ledger.jsonl` in the source tree: one JSON object per line, one
line per engine version per run of the conformance suite `tests/contract`), appended by
`reddwarf engines classify`. The rules (documented in `docs/classification.md`) are pure functions of
the ledger lines of one (engine, version, runtime):

- experimental: the floor. A version with no full run recorded, or whose latest full run did not pass
  every declared capability, is experimental (a passing lifecycle is what makes a version worth
  offering at all; it is recorded, and `reason` says when even that failed).
- technical preview: the latest full run passed the lifecycle tests and every capability the engine
  declared in that run (none of them failed, none untested).
- stable: technical preview on `STABLE_RUNS` (3) consecutive full runs on distinct commits. Consecutive
  means the newest full runs, uninterrupted by a run that was not technical preview; runs on a dirty
  working tree qualify nothing (they are not the commit they name) but do not break a streak either.

A strategy (`backup:<name>`, `replication:<name>`, `clustering:<name>`) is classified by the same rules
over the lifecycle and that strategy's own result.

The server loads the ledger once per path (`ledger_for`), from `Settings.classification_ledger` or the
ledger of the source checkout this package runs from (`DEFAULT_LEDGER`; an installed wheel has none, and
then every version is experimental, with a warning in the log). A malformed ledger raises `LedgerError`
naming the file and line: it is a deployment error, never silently read as "everything experimental".
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from reddwarf.domain.capabilities import Capabilities
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.services.context import ServiceContext
from reddwarf.settings import Settings

log = logging.getLogger(__name__)

STABLE_RUNS = 3
LIFECYCLE = "lifecycle"
STRATEGY_KINDS = ("backup", "replication", "clustering")
# src/reddwarf/services/classification.py -> the checkout root (an editable install or a source tree).
DEFAULT_LEDGER = Path(__file__).resolve().parents[3] / "classification" / "ledger.jsonl"


class LedgerError(ValueError):
    """The ledger cannot be read: the message names the file and line."""


class Level(StrEnum):
    EXPERIMENTAL = "experimental"
    TECHNICAL_PREVIEW = "technical_preview"
    STABLE = "stable"


class Result(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    UNTESTED = "untested"


@dataclass(frozen=True, slots=True)
class Counts:
    """Test outcomes of one capability in one run (skipped tests leave a capability untested)."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def result(self) -> Result:
        if self.failed:
            return Result.FAILED
        return Result.PASSED if self.passed else Result.UNTESTED


@dataclass(frozen=True, slots=True)
class Run:
    """One ledger line: the conformance results of one engine version in one run of the suite.

    `declared` lists what the engine declared for the version at the time (capability names and
    strategies as `kind:name`); `results` maps each tested or declared name to its result; `full` is
    False for a run of part of the suite (ignored by the rules).
    """

    commit: str
    date: str
    engine: str
    version: str
    runtime: str
    declared: tuple[str, ...]
    results: Mapping[str, Result]
    counts: Mapping[str, Counts] = field(default_factory=dict)
    number: str = ""
    full: bool = True
    dirty: bool = False

    def result(self, name: str) -> Result:
        return self.results.get(name, Result.UNTESTED)

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit, "dirty": self.dirty, "date": self.date, "engine": self.engine,
            "version": self.version, "number": self.number, "runtime": self.runtime, "full": self.full,
            "declared": list(self.declared),
            "results": {k: v.value for k, v in sorted(self.results.items())},
            "tests": {
                k: {"passed": c.passed, "failed": c.failed, "skipped": c.skipped}
                for k, c in sorted(self.counts.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        """Parse one ledger object; raises `ValueError`/`KeyError`/`TypeError` on a malformed one."""
        results = {str(k): Result(v) for k, v in dict(data["results"]).items()}
        counts = {
            str(k): Counts(int(v.get("passed", 0)), int(v.get("failed", 0)), int(v.get("skipped", 0)))
            for k, v in dict(data.get("tests", {})).items()
        }
        return cls(
            commit=str(data["commit"]), date=str(data["date"]), engine=str(data["engine"]),
            version=str(data["version"]), runtime=str(data["runtime"]),
            declared=tuple(str(d) for d in data.get("declared", ())), results=results, counts=counts,
            number=str(data.get("number", "")), full=bool(data.get("full", True)),
            dirty=bool(data.get("dirty", False)),
        )


@dataclass(frozen=True, slots=True)
class Classification:
    """A level and why: the streak of qualifying distinct commits and the latest full run, if any."""

    level: Level
    reason: str
    streak: int = 0
    latest: Run | None = None


# -- the rules (pure) ---------------------------------------------------------------------------------


def declared_capabilities(run: Run) -> list[str]:
    """The capabilities (not strategies) a run's engine declared."""
    return [d for d in run.declared if ":" not in d and d != LIFECYCLE]


def shortfall(run: Run, names: Iterable[str]) -> str | None:
    """Why `run` does not pass the lifecycle and every one of `names`; None when it does."""
    for name in (LIFECYCLE, *names):
        result = run.result(name)
        if result is not Result.PASSED:
            return f"{name} {result.value}"
    return None


def classify_runs(runs: Sequence[Run], required: Sequence[str] | None = None, *, stable_runs: int = STABLE_RUNS) -> (
    Classification
):
    """The level of one engine version (or one strategy) from its runs, oldest first.

    `required` is what must pass besides the lifecycle: by default every capability the run declared;
    for a strategy, `["backup:<name>"]`.
    """
    full = [run for run in runs if run.full]
    if not full:
        return Classification(Level.EXPERIMENTAL, "no full conformance run recorded")
    latest = full[-1]

    def missing(run: Run) -> str | None:
        return shortfall(run, declared_capabilities(run) if required is None else required)

    why = missing(latest)
    if why is not None:
        return Classification(Level.EXPERIMENTAL, f"latest run ({latest.commit[:12]}): {why}", 0, latest)
    commits: list[str] = []
    for run in reversed(full):
        if missing(run) is not None:
            break
        if not run.dirty and run.commit not in commits:
            commits.append(run.commit)
    if len(commits) >= stable_runs:
        return Classification(Level.STABLE, f"passed on {len(commits)} consecutive commits", len(commits), latest)
    return Classification(
        Level.TECHNICAL_PREVIEW,
        f"every declared capability passed; {len(commits)} of {stable_runs} clean commits for stable",
        len(commits), latest,
    )


def run_from_outcomes(
    *, engine: str, version: str, number: str, runtime: str, commit: str, dirty: bool, date: str,
    declared: Sequence[str], counts: Mapping[str, Counts], full: bool = True,
) -> Run:
    """A ledger line from the outcome counts the conformance recorder wrote for one engine version.

    Every declared name and the lifecycle get a result (untested when no test ran for it).
    """
    names = {LIFECYCLE, *declared, *counts}
    results = {name: counts.get(name, Counts()).result for name in names}
    return Run(
        commit=commit, date=date, engine=engine, version=version, runtime=runtime, declared=tuple(declared),
        results=results, counts=dict(counts), number=number, full=full, dirty=dirty,
    )


def declared_names(capabilities: Capabilities) -> list[str]:
    """What an engine version declares, as ledger names: capabilities, then `kind:strategy` names."""
    names = sorted(c.value for c in capabilities.offered)
    names += [f"backup:{s}" for s in capabilities.backup_strategies]
    names += [f"replication:{s}" for s in capabilities.replication_strategies]
    return names


# -- the ledger -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ledger:
    """Every recorded run, in file order (oldest first)."""

    runs: tuple[Run, ...] = ()

    @classmethod
    def parse(cls, text: str, source: str = "ledger") -> Ledger:
        runs = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                runs.append(Run.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise LedgerError(f"{source}:{number}: not a classification record ({exc})") from None
        return cls(tuple(runs))

    @classmethod
    def load(cls, path: Path) -> Ledger:
        """The ledger at `path`; an empty one (every version experimental) when the file does not exist."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            log.warning("classification ledger %s not found: every datastore version is experimental", path)
            return cls()
        except OSError as exc:
            raise LedgerError(f"{path}: cannot read the classification ledger ({exc.strerror})") from None
        return cls.parse(text, str(path))

    def runs_of(self, engine: str, version: str, runtime: str) -> list[Run]:
        return [r for r in self.runs if (r.engine, r.version, r.runtime) == (engine, version, runtime)]

    def classify(self, engine: str, version: str, runtime: str) -> Classification:
        return classify_runs(self.runs_of(engine, version, runtime))

    def classify_strategy(self, engine: str, version: str, runtime: str, kind: str, name: str) -> Classification:
        return classify_runs(self.runs_of(engine, version, runtime), [f"{kind}:{name}"])


def append_runs(path: Path, runs: Iterable[Run]) -> None:
    """Append runs to the ledger at `path` (created if missing), one JSON object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(run.to_json(), sort_keys=True) + "\n" for run in runs)
    with path.open("a", encoding="utf-8") as ledger:
        ledger.write(lines)


def ledger_path(settings: Settings) -> Path:
    return settings.classification_ledger or DEFAULT_LEDGER


@functools.lru_cache(maxsize=8)
def _cached(path: Path) -> Ledger:
    return Ledger.load(path)


def ledger_for(settings: Settings) -> Ledger:
    """The ledger the server serves: loaded once per path per process."""
    return _cached(ledger_path(settings).absolute())


# -- what the API shows ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StrategyStatus:
    kind: str
    name: str
    level: Level


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """A datastore version's declared capabilities, its classification and its strategies'."""

    capabilities: Capabilities
    classification: Classification
    strategies: tuple[StrategyStatus, ...]


def capabilities(ctx: ServiceContext, version: DatastoreVersion) -> Capabilities:
    return ctx.engines[version.datastore].capabilities(version)


def classify(ctx: ServiceContext, version: DatastoreVersion) -> Classification:
    return ledger_for(ctx.settings).classify(version.datastore, version.name, ctx.settings.runtime)


def version_status(ctx: ServiceContext, version: DatastoreVersion) -> VersionStatus:
    ledger = ledger_for(ctx.settings)
    runtime = ctx.settings.runtime
    offered = capabilities(ctx, version)
    strategies = [("backup", s) for s in offered.backup_strategies]
    strategies += [("replication", s) for s in offered.replication_strategies]
    return VersionStatus(
        capabilities=offered,
        classification=ledger.classify(version.datastore, version.name, runtime),
        strategies=tuple(
            StrategyStatus(kind, name, ledger.classify_strategy(version.datastore, version.name, runtime, kind,
                                                                name).level)
            for kind, name in strategies
        ),
    )


def hidden(ctx: ServiceContext, version: DatastoreVersion) -> bool:
    """Whether `hide_experimental` hides this version from tenants (admins always see it)."""
    return ctx.settings.hide_experimental and classify(ctx, version).level is Level.EXPERIMENTAL

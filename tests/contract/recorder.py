"""A pytest plugin that records conformance outcomes per (engine version, capability) for
`reddwarf engines classify`: load it with `-p tests.contract.recorder --contract-results PATH`.

It writes one JSON object: `{"targets": [{"engine", "version", "runtime", "number", "declared",
"counts": {capability: {"passed", "failed", "skipped"}}}], "selected_all": bool}`. A test counts for its
`capability` marker and for the names in its `also=` (a test that proves more than one: an incremental
chain's test restores its full backup too); a test marked `kind:strategy` also counts for `kind`. A failed
setup or teardown is a failure of the test's capability; a skipped test leaves it untested. Targets whose
engine version is not installed are left out (no entry: experimental).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

OUTCOMES = ("passed", "failed", "skipped")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--contract-results", default=None, help="Write conformance outcomes (JSON) to this file.")


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.targets: dict[str, Any] = {}
        self.outcomes: dict[tuple[str, str], dict[str, Any]] = {}
        self.deselected = 0

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        callspec = getattr(item, "callspec", None)
        target = callspec.params.get("target") if callspec is not None else None
        marker = item.get_closest_marker("capability")
        if target is None or marker is None or target.installed is None:
            return
        self.targets[target.id] = target
        key = (target.id, item.nodeid)
        capabilities = [str(marker.args[0]), *(str(name) for name in marker.kwargs.get("also", ()))]
        previous = self.outcomes.get(key, {}).get("outcome")
        if report.failed or previous == "failed":
            result = "failed"
        elif report.skipped:
            result = "skipped"
        elif report.when == "call":
            result = "passed"
        else:
            result = previous or "pending"
        self.outcomes[key] = {"capabilities": capabilities, "outcome": result}

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        counts: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
        for (target_id, _node), record in self.outcomes.items():
            outcome = record["outcome"] if record["outcome"] in OUTCOMES else "failed"
            names = set(record["capabilities"])
            names |= {name.split(":", 1)[0] for name in names if ":" in name}
            for name in sorted(names):
                per = counts[target_id].setdefault(name, dict.fromkeys(OUTCOMES, 0))
                per[outcome] += 1
        result = {
            "selected_all": self.deselected == 0 and not session.config.getoption("keyword")
            and not session.config.getoption("markexpr"),
            "targets": [
                {"engine": t.engine, "version": t.version, "runtime": t.runtime, "number": t.installed.number,
                 "declared": list(t.declared), "counts": counts.get(t.id, {})}
                for t in self.targets.values()
            ],
        }
        self.path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("contract_results")
    if path:
        config.pluginmanager.register(Recorder(Path(path)), "contract-recorder")

"""`reddwarf engines verify`: a throwaway server of every installed engine version, through the real
runtime and engine, connected to as its admin, then cleaned up; non-zero exit when a version fails."""

from __future__ import annotations

import json
import pwd
import subprocess
from pathlib import Path
from typing import Any

from tests.support.server import REDDWARF

from reddwarf import wiring

POOL = "127.0.95.0/24"


def verify(scratch: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [REDDWARF, "engines", "verify", "--json", "--address-pool", POOL, "--scratch", str(scratch), *extra],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert result.stdout.strip(), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, report


def verify_users() -> set[str]:
    return {p.pw_name for p in pwd.getpwall() if p.pw_name.startswith("rv")}


def installed() -> set[tuple[str, str]]:
    return {(name, v.name) for name, engine in wiring.engines().items() for v in engine.versions()}


def assert_clean(scratch: Path, users_before: set[str]) -> None:
    assert list(scratch.iterdir()) == [], "the throwaway state dir is removed"
    assert verify_users() == users_before
    assert not [line for line in Path("/proc/mounts").read_text().splitlines() if str(scratch) in line]


def test_verify_starts_every_installed_version_and_cleans_up(scratch_root: Path) -> None:
    before = verify_users()

    code, report = verify(scratch_root)

    assert code == 0, report
    assert {(v["engine"], v["version"]) for v in report["versions"]} == installed()
    assert all(v["ok"] and v["error"] is None and v["seconds"] > 0 for v in report["versions"])
    assert report["runtime"] == "local"
    assert {"memory_cpu_limits", "volumes", "volume_pool", "users", "addresses"} <= set(report["isolation"])
    assert POOL in report["isolation"]["addresses"]
    assert_clean(scratch_root, before)


def test_verify_exits_non_zero_when_a_version_fails_and_still_cleans_up(scratch_root: Path) -> None:
    before = verify_users()

    code, report = verify(scratch_root, "--timeout", "0")

    assert code == 1
    failed = [v for v in report["versions"] if not v["ok"]]
    assert failed and all("could not connect" in v["error"] for v in failed)
    assert_clean(scratch_root, before)

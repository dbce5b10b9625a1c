"""Pure parts of how the local runtime launches and finds processes: the launcher argv, /proc status parsing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reddwarf.domain.errors import PermanentError
from reddwarf.runtimes.local import launch
from reddwarf.runtimes.local.processes import live_pids_of_user


def status(uid: int, state: str = "S (sleeping)") -> str:
    return f"Name:\tx\nUmask:\t0022\nState:\t{state}\nTgid:\t1\nUid:\t{uid}\t0\t{uid}\t{uid}\nGid:\t5\t5\t5\t5\n"


def test_only_live_processes_whose_real_uid_matches_are_found(tmp_path: Path) -> None:
    entries = {
        "10": status(990),
        "11": status(990, "Z (zombie)"),
        "12": status(991),
        "13": "Uid:\t990\t990\t990\t990\nState:\tR (running)",  # fields at the start and at the end
        "14": "Name:\tno uid line\n",
        "self": status(990),  # not a pid
    }
    for name, text in entries.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "status").write_text(text)
    (tmp_path / "15").mkdir()  # a process that exited between listing and reading
    assert sorted(live_pids_of_user(990, proc=tmp_path)) == [10, 13]


def test_the_launcher_joins_the_cgroups_then_drops_to_the_user() -> None:
    procs = [Path("/sys/fs/cgroup/memory/rd/u/cgroup.procs"), Path("/sys/fs/cgroup/cpu/rd/u/cgroup.procs")]
    argv = launch.server_argv("/usr/bin/setpriv", 990, 991, ["redis-server", "--port", "$(reboot)"], procs)
    assert argv[:2] == [launch.SHELL, "-c"]
    separator = argv.index("--")
    assert argv[4:separator] == [str(p) for p in procs]
    assert argv[separator + 1 :] == [
        "/usr/bin/setpriv", "--reuid=990", "--regid=991", "--clear-groups", "--no-new-privs", "--",
        "redis-server", "--port", "$(reboot)",
    ]  # fmt: skip
    assert launch.user_argv("/usr/bin/setpriv", 990, 991, ["x"]) == [
        "/usr/bin/setpriv", "--reuid=990", "--regid=991", "--clear-groups", "--no-new-privs", "--", "x",
    ]  # fmt: skip
    with pytest.raises(PermanentError):
        launch.user_argv("/usr/bin/setpriv", 0, 991, ["x"])
    # A member of a replication set: its set's group is its one supplementary group, never root's.
    assert launch.user_argv("/usr/bin/setpriv", 990, 991, ["x"], (995,))[3] == "--groups=995"
    with pytest.raises(PermanentError):
        launch.user_argv("/usr/bin/setpriv", 990, 991, ["x"], (0,))


def launcher_touching(marker: Path, procs: list[Path]) -> list[str]:
    """A launcher whose final command creates `marker` (setpriv swapped for touch, as we are not dropping here)."""
    argv = launch.server_argv("/usr/bin/touch", 990, 991, ["ignored"], procs)
    start = argv.index("--reuid=990")
    argv[start : argv.index("ignored") + 1] = [str(marker)]
    return argv


def test_the_launcher_runs_the_command_only_after_go(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    procs = [tmp_path / "cgroup.procs"]
    procs[0].write_text("")
    released = subprocess.run(launcher_touching(marker, procs), input=launch.GO, capture_output=True, check=False)
    assert released.returncode == 0 and marker.exists()
    assert procs[0].read_text().strip().isdigit()  # it wrote its pid to the "cgroup" first
    marker.unlink()
    for stdin in (b"", b"stop\n"):  # the runtime died or gave up before the go: nothing runs
        held = subprocess.run(launcher_touching(marker, procs), input=stdin, capture_output=True, check=False)
        assert held.returncode == launch.NOT_RELEASED
        assert not marker.exists()


def test_the_launcher_refuses_to_run_the_command_when_a_cgroup_cannot_be_joined(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    argv = launcher_touching(marker, [tmp_path / "missing" / "cgroup.procs"])
    done = subprocess.run(argv, input=launch.GO, capture_output=True, check=False)
    assert done.returncode == launch.JOIN_FAILED
    assert not marker.exists()


def test_a_missing_program_is_refused_before_anything_is_spawned() -> None:
    with pytest.raises(PermanentError, match="no-such-server"):
        launch.require_executable("no-such-server", "/usr/bin:/bin")
    launch.require_executable("sh", "/usr/bin:/bin")

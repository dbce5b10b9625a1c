"""A worker paused past its lease, in the middle of a step that runs a child process, changes nothing once
it resumes: the worker that took over finishes the operation alone.

The pause is deterministic: `REDDWARF_TEST_CRASH_ACTION=pause` turns the crash point
`instance.create:initialise:child` (right after `initdb` started) into a SIGSTOP of the worker. Its child
goes on running. A second worker claims the operation once the one-second lease expires, kills what is left
of the stale initialisation, initialises, starts and finishes. Then the first worker is resumed: it must
notice that its lease is gone before it does anything more, and leave the instance, its server, its
journal and its init marker (the commit of the step, naming the attempt that wrote it) as the second left
them.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.test_worker_killed import CREATE_STEPS, _owner_of_instance_files, clean_up, finished
from tests.support.server import ReddwarfProcesses, processes_of, running_plane, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("chaos-pause", "127.0.98.0/24", REDDWARF_EMBEDDED_WORKERS="0", REDDWARF_LEASE_TTL="1") as procs:
        yield procs


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _live(pids: list[int]) -> list[int]:
    """Not the zombies: the paused worker's init command, dead, is reaped only once that worker resumes."""
    alive = []
    for pid in pids:
        try:
            if _state(pid) != "Z":
                alive.append(pid)
        except FileNotFoundError:
            continue
    return alive


def test_a_worker_paused_past_its_lease_leaves_the_other_to_finish_alone(plane: ReddwarfProcesses) -> None:
    marker = plane.state_dir / f"pause-{secrets.token_hex(4)}"
    with plane.client() as client:
        response = client.post("/instances", json={"instance": {
            "name": "paused", "flavorRef": "1", "volume": {"size": 1},
            "datastore": {"type": "postgresql", "version": "15"},
        }})
        assert response.status_code == 200, response.text
        instance_id = response.json()["instance"]["id"]
        log = plane.state_dir / f"worker-{len(plane.procs)}.log"
        paused = plane.start_worker(REDDWARF_TEST_CRASH_AT="instance.create:initialise:child",
                                    REDDWARF_TEST_CRASH_ACTION="pause", REDDWARF_TEST_CRASH_MARKER=str(marker))
        try:
            wait_for(lambda: marker.exists() and _state(paused.pid) == "T", 120,
                     "the worker to pause while its init command runs")
            plane.start_worker()
            steps = wait_for(lambda: finished(plane, instance_id, "instance.create"), 120,
                             "the second worker to finish the create")
            assert steps == CREATE_STEPS, steps
            assert client.get(f"/instances/{instance_id}").json()["instance"]["status"] == "ACTIVE"
            private = plane.state_dir / "instances" / instance_id / "private"
            committed = (private / "initialised").read_text()
            assert "-a2-" in committed, committed  # the second attempt's initialisation, not the paused one's
            owner = _owner_of_instance_files(plane, instance_id)
            server = _live(processes_of(owner))
            assert server, "the instance's server should run"

            os.kill(paused.pid, signal.SIGCONT)
            wait_for(lambda: "lease lost (superseded or expired); letting go" in log.read_text(), 30,
                     "the resumed worker to notice that its lease is gone")
            # It goes on as a worker; what it was doing left no trace.
            assert paused.poll() is None
            assert finished(plane, instance_id, "instance.create") == CREATE_STEPS
            assert (private / "initialised").read_text() == committed
            assert _live(processes_of(owner)) == server
            assert client.get(f"/instances/{instance_id}").json()["instance"]["status"] == "ACTIVE"
        finally:
            if paused.poll() is None:
                os.kill(paused.pid, signal.SIGCONT)
            clean_up(plane, client, instance_id)

"""The host fence of a failed-over primary (`LocalRuntime.fence`), with real processes: every process of the
instance's OS user is gone when it returns, whether the server ran, was stopped by a signal, or had its whole
cgroup frozen (a frozen process dies only once thawed); from then on nothing starts it, whoever asks, until it
is let go (`unfence`)."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest
from local_runtime_support import Instances
from test_local_runtime_processes import RESOURCES, eventually, greeting, proc_state
from test_local_runtime_processes import workload as plain_workload
from tests.support.server import processes_of

from reddwarf.domain.errors import PermanentError
from reddwarf.domain.workload import FileSpec, Placement, WorkloadSpec


def workload(placement: Placement) -> WorkloadSpec:
    """The tiny server, binding as servers do (SO_REUSEADDR): it starts again on its address at once."""
    spec = plain_workload(placement)
    (script,) = spec.files
    content = script.content.replace("listener = socket.socket()\n", "listener = socket.socket()\n"
                                     "listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n")
    assert content != script.content
    return dataclasses.replace(spec, files=(FileSpec(path=script.path, content=content, mode=script.mode),))


@pytest.mark.parametrize("state", ["running", "stopped", "frozen"])
def test_a_fenced_server_is_gone_whatever_its_state_and_starts_only_once_let_go(
    instances: Instances, port: int, state: str
) -> None:
    runtime = instances.runtime()
    placement = instances.prepare(runtime, RESOURCES, port)
    runtime.start(placement, workload(placement))
    assert eventually(lambda: greeting(placement) is not None)
    helper_file = Path(placement.run_dir) / "helper.pid"
    assert eventually(helper_file.exists)
    server, helper = runtime.observe(placement).pid, int(helper_file.read_text())
    assert server is not None
    if state == "stopped":
        os.kill(server, signal.SIGSTOP)
        assert eventually(lambda: runtime.observe(placement).stopped)
    elif state == "frozen":
        assert runtime.freeze(placement), "this host has no freezer for an instance's cgroup"
        assert greeting(placement) is None  # the kernel takes the connection; the server says nothing

    runtime.fence(placement)
    assert _alive(server) is False and _alive(helper) is False
    assert [pid for pid in processes_of(placement.os_user) if _alive(pid)] == []
    assert not runtime.observe(placement).running
    with pytest.raises(PermanentError, match="fenced"):
        runtime.start(placement, workload(placement))
    assert [pid for pid in processes_of(placement.os_user) if _alive(pid)] == []

    runtime.unfence(placement)
    runtime.start(placement, workload(placement))
    log = Path(placement.log_dir) / "server.log"
    assert eventually(lambda: greeting(placement) is not None), log.read_text()[-2000:]


def _alive(pid: int) -> bool:
    """Not gone and not a zombie (an orphan's exit status waits for whoever reaps it: it runs nothing)."""
    return proc_state(pid) not in (None, "Z")

"""A fake runtime: placements under a path that does not exist, every server running, nothing started.

It records the lifecycle calls it gets (`calls`, as `(method, instance_id)`) so that a test can say what a
reconciler asked of the runtime; `storage_capacity` is what the test sets (None: no host storage to account).
A tool it is asked to run (`open_tool`) writes `tool_output` to its stdout; what is fed to a tool's stdin is
kept in `tool_inputs`, by the tool's argv. `archive` holds, per instance, the files its server archived.
It can branch (`branch_refusal` None) unless the test sets `refuse_branches`; `snapshots` holds the ids of
the snapshots it holds.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

from reddwarf.domain.endpoints import Route
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.workload import Placement, ProcessObservation, Resources, ToolSpec, WorkloadSpec
from reddwarf.runtimes.base import Runtime, ToolRun

ROOT = "/nonexistent/fake-runtime"


class FakeRuntime:
    """Stands in for a `Runtime`; every server it is asked about runs and uses 1 KiB of its volume."""

    def __init__(self, capacity: int | None = None, addresses: tuple[str, ...] = ("127.0.1.9",)) -> None:
        self.capacity = capacity
        self.addresses = addresses
        self.calls: list[tuple[str, str]] = []
        self.initialised_ids: set[str] = set()
        self.tool_output = b""
        self.tool_inputs: dict[tuple[str, ...], bytes] = {}
        self.archive: dict[str, dict[str, bytes]] = {}
        self.refuse_branches: str | None = None
        self.refuse_copies: str | None = None  # `branch` raises PermanentError with this (a refused copy)
        self.snapshots: set[str] = set()
        self.held: set[tuple[str, int]] = set()  # (address, port) someone else listens on
        self.fenced: set[str] = set()
        self.routes: list[Route] = []

    @property
    def name(self) -> str:
        return "fake"

    def placement(self, instance_id: str, address: str, port: int) -> Placement:
        home = f"{ROOT}/{instance_id}"
        return Placement(instance_id=instance_id, os_user="nobody", address=address, port=port,
                         data_dir=f"{home}/data", config_dir=f"{home}/config", log_dir=f"{home}/log",
                         run_dir=f"{home}/run", socket_dir=f"{home}/run", scratch_dir=f"{home}/run-tmp")

    def endpoint_candidates(self, standard_port: int) -> Iterator[tuple[str, int]]:
        for address in self.addresses:
            yield address, standard_port

    def bindable(self, address: str, port: int) -> bool:
        return (address, port) not in self.held

    def prepare(self, placement: Placement, resources: Resources) -> None:
        self.calls.append(("prepare", placement.instance_id))

    def initialise(self, placement: Placement, workload: WorkloadSpec) -> None:
        self.calls.append(("initialise", placement.instance_id))
        self.initialised_ids.add(placement.instance_id)

    def initialised(self, placement: Placement) -> bool:
        return placement.instance_id in self.initialised_ids

    def start(self, placement: Placement, workload: WorkloadSpec) -> None:
        self.calls.append(("start", placement.instance_id))

    def observe(self, placement: Placement) -> ProcessObservation:
        return ProcessObservation(running=True, pid=1, volume_used_bytes=1024)

    def watch_exits(self, listener: Callable[[str], None]) -> None:
        """Its servers never exit."""

    def stop(self, placement: Placement, workload: WorkloadSpec) -> None:
        self.calls.append(("stop", placement.instance_id))

    def destroy(self, placement: Placement) -> None:
        self.calls.append(("destroy", placement.instance_id))

    def refresh(self, placement: Placement, workload: WorkloadSpec) -> None:
        self.calls.append(("refresh", placement.instance_id))

    def storage_capacity(self) -> int | None:
        return self.capacity

    @contextlib.contextmanager
    def open_tool(self, placement: Placement, tool: ToolSpec) -> Iterator[ToolRun]:
        self.calls.append(("tool:" + tool.argv[0], placement.instance_id))
        run = FakeToolRun(self.tool_output, tool.stdin)
        try:
            yield run
        finally:
            if run.input is not None:
                self.tool_inputs[tool.argv] = run.input.getvalue()

    def branch_refusal(self) -> str | None:
        return self.refuse_branches

    def snapshot_refusal(self, placement: Placement) -> str | None:
        return self.refuse_branches

    def snapshot(self, placement: Placement, snapshot_id: str, carried: tuple[str, ...] = ()) -> None:
        self.calls.append(("snapshot", placement.instance_id))
        self.snapshots.add(snapshot_id)

    def remove_snapshot(self, snapshot_id: str) -> None:
        self.snapshots.discard(snapshot_id)

    def branch(self, placement: Placement, resources: Resources, snapshot_id: str, workload: WorkloadSpec) -> None:
        if snapshot_id not in self.snapshots:
            raise AssertionError(f"branch of snapshot {snapshot_id}, which the fake runtime does not hold")
        if self.refuse_copies is not None:
            raise PermanentError(self.refuse_copies)
        self.calls.append(("branch", placement.instance_id))
        self.initialised_ids.add(placement.instance_id)

    def upkeep(self) -> None:
        self.calls.append(("upkeep", ""))

    def archived(self, placement: Placement, directory: str) -> list[str]:
        return sorted(self.archive.get(placement.instance_id, {}))

    def read_archived(self, placement: Placement, directory: str, name: str, limit: int) -> bytes:
        return self.archive[placement.instance_id][name]

    def remove_archived(self, placement: Placement, directory: str, name: str) -> None:
        self.archive.get(placement.instance_id, {}).pop(name, None)

    def fence(self, placement: Placement) -> None:
        self.calls.append(("fence", placement.instance_id))
        self.fenced.add(placement.instance_id)

    def unfence(self, placement: Placement) -> None:
        self.calls.append(("unfence", placement.instance_id))
        self.fenced.discard(placement.instance_id)

    def publish_routes(self, read: Callable[[], list[Route]]) -> None:
        self.routes = read()

    def isolation_report(self) -> dict[str, str]:
        return {"isolation": "none (fake runtime)"}


# The protocol check: mypy fails here when the fake drifts from `Runtime`.
_RUNTIME: Runtime = FakeRuntime()


class FakeToolRun:
    """A tool that wrote `output` and kept its input."""

    def __init__(self, output: bytes, reads_stdin: bool) -> None:
        self._output = io.BytesIO(output)
        self.input = io.BytesIO() if reads_stdin else None

    @property
    def stdin(self) -> BinaryIO | None:
        return self.input

    @property
    def stdout(self) -> BinaryIO:
        return self._output

    def output(self, piece: int, idle_timeout: float) -> Iterator[bytes]:
        while data := self._output.read(piece):
            yield data

    def finish(self, timeout: float) -> Mapping[str, bytes]:
        return {}

"""The Runtime protocol: what every place that runs database servers owes the control plane.

Obligations of an implementation:

- Every method is idempotent and safe to call again after a crash at any point of a previous call
  (the reconciler journals steps, but a step may run twice).
- `placement()` is pure: it derives paths and the OS user from the instance id and the allocated
  address; nothing is created.
- `endpoint_candidates()` lists (address, port) pairs to try for an engine's standard port, in order
  (pool addresses with the standard port, or one routable address across a port range); `bindable()`
  test-binds one. The control plane records the chosen pair so it is never handed out twice.
- `prepare()` creates the OS user, directories (0700, owned by that user), the volume of `volume_gb`
  and the resource limits. `initialise()` writes `init_files`, runs `init` once (a marker guards it),
  makes what init wrote durable before it writes the marker (init commands may skip their own fsyncs), and
  removes secret init files. `start()` writes `files` and starts `server` unless it already runs; it does
  not wait for readiness (the engine's probe does).
- `observe()` never raises for a dead server: it reports `running=False` with a reason. It is called every
  second or so for every instance by the health loop: it must be cheap (no subprocess, no scan).
- `watch_exits(listener)` calls `listener(instance_id)` (from any thread; it returns at once) as soon as a
  server that `observe()` saw running exits, so a death is seen without waiting for the next observation.
  A runtime that cannot tell calls nothing: the health loop's interval is then the bound.
- `stop()` stops the server (its whole process group), waiting up to `workload.stop_timeout`, then kills.
- `WorkloadSpec.peer_group`: the members of one replication set, and nobody else, may reach each other's
  servers (their processes, init included, are let through; the engine's servers check who came).
- `destroy()` removes everything `prepare()` made: process, files, volume, limits, OS user.
- `open_tool(placement, tool)` runs a backup's or a restore's tool (`ToolSpec`) in a process group of its
  own under the current fence, and yields a `ToolRun`; leaving the context kills whatever of it still
  runs and removes its work directory. An instance-user tool runs with no new privileges and never as
  root; a control-plane tool gets no file of the instance.
- `archived(placement, directory)`, `read_archived(...)`, `remove_archived(...)`: the files a server archives
  (PostgreSQL's WAL segments) in a directory of the instance's own on its volume, read by the control plane
  to ship them to backup storage. Never follow a symlink a tenant planted; a file that is not regular, or
  larger than `limit`, is a `PermanentError`.
- `storage_capacity()` is read-only and cheap enough to call per create: the bytes the runtime's volumes
  may occupy on the host (free space of the storage holding them plus what its volumes occupy there now),
  or None when it has no host storage to account (the control plane then reserves nothing against it).
- Failures that may pass raise `TemporaryError`; failures that will not raise `PermanentError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol

from reddwarf.domain.endpoints import Route
from reddwarf.domain.workload import Placement, ProcessObservation, Resources, ToolSpec, WorkloadSpec


class Runtime(Protocol):
    """A place that runs database servers."""

    @property
    def name(self) -> str: ...

    def placement(self, instance_id: str, address: str, port: int) -> Placement: ...

    def endpoint_candidates(self, standard_port: int) -> Iterator[tuple[str, int]]: ...

    def bindable(self, address: str, port: int) -> bool: ...

    def prepare(self, placement: Placement, resources: Resources) -> None: ...

    def initialise(self, placement: Placement, workload: WorkloadSpec) -> None: ...

    def initialised(self, placement: Placement) -> bool:
        """Whether `initialise` completed for the instance (its init marker exists)."""
        ...

    def start(self, placement: Placement, workload: WorkloadSpec) -> None: ...

    def observe(self, placement: Placement) -> ProcessObservation: ...

    def watch_exits(self, listener: Callable[[str], None]) -> None: ...

    def stop(self, placement: Placement, workload: WorkloadSpec) -> None: ...

    def refresh(self, placement: Placement, workload: WorkloadSpec) -> None:
        """Rewrite the running server's `files` and apply its `peer_group` without a restart."""
        ...

    def destroy(self, placement: Placement) -> None: ...

    def storage_capacity(self) -> int | None: ...

    def open_tool(self, placement: Placement, tool: ToolSpec) -> AbstractContextManager[ToolRun]: ...

    def branch_refusal(self) -> str | None:
        """None when this runtime can snapshot and branch instances; else why not, in an operator's words."""
        ...

    def snapshot_refusal(self, placement: Placement) -> str | None:
        """None when the instance's volume can be snapshotted now (`snapshot`); else why not, in an operator's
        words (no copy-on-write pool, or a volume made before the pool that moves there at its restart)."""
        ...

    def snapshot(self, placement: Placement, snapshot_id: str, carried: tuple[str, ...] = ()) -> None:
        """A crash-consistent snapshot of the instance's volume while its server runs (the engine quiesced
        it), with the files `carried` of its configuration; idempotent."""
        ...

    def remove_snapshot(self, snapshot_id: str) -> None: ...

    def branch(self, placement: Placement, resources: Resources, snapshot_id: str, workload: WorkloadSpec) -> None:
        """Prepare the instance on a copy of the snapshot, its files its own, `workload.init` run (the
        engine's fix-ups), then the init marker; nothing once initialised."""
        ...

    def upkeep(self) -> None:
        """Housekeeping between operations, run periodically by one worker per process (the local runtime
        re-bases fragmented volume images); quick when there is nothing to do."""
        ...

    def archived(self, placement: Placement, directory: str) -> list[str]: ...

    def read_archived(self, placement: Placement, directory: str, name: str, limit: int) -> bytes: ...

    def remove_archived(self, placement: Placement, directory: str, name: str) -> None: ...

    def fence(self, placement: Placement) -> None:
        """Fence a failed-over primary on its host: nothing starts its server until `unfence`, and every process
        of it is killed (a frozen or stopped one too); returns once that is confirmed (TemporaryError if not)."""
        ...

    def unfence(self, placement: Placement) -> None: ...

    def publish_routes(self, read: Callable[[], list[Route]]) -> None:
        """Route the sets' stable endpoints as `read()` says now (docs/failover.md); writers are ordered and each
        reads inside that order, so an older read never replaces a newer one."""
        ...

    def isolation_report(self) -> dict[str, str]:
        """What isolation this host gives (cgroups version, loop volumes) or why it falls back."""
        ...


class ToolRun(Protocol):
    """A running tool: write its stdin (when `ToolSpec.stdin`), read its stdout, then `finish()`."""

    @property
    def stdin(self) -> BinaryIO | None: ...

    @property
    def stdout(self) -> BinaryIO: ...

    def output(self, piece: int, idle_timeout: float) -> Iterator[bytes]:
        """The tool's stdout in pieces of at most `piece` bytes, never blocking for long: it ends at EOF;
        `LeaseLost` when the fence is cancelled; `PermanentError` after `idle_timeout` seconds without a byte,
        or when the output goes on after the tool exited (another process holds it)."""
        ...

    def finish(self, timeout: float) -> Mapping[str, bytes]:
        """Close stdin, wait for the exit; the `collect`ed files by name. `PermanentError` naming the tool,
        its exit and the tail of its stderr when it failed; `LeaseLost` when the fence killed it."""
        ...

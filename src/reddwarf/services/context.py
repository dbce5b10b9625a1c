"""`ServiceContext`: everything a use case needs, built once by the composition root and passed explicitly."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from reddwarf.domain.catalog import Flavor
from reddwarf.domain.instance import Instance
from reddwarf.domain.workload import Placement
from reddwarf.engines.base import Engine
from reddwarf.identity.context import AuthContext
from reddwarf.settings import Settings
from reddwarf.store.database import Database
from reddwarf.store.records import Operation
from reddwarf.store.uow import UnitOfWork

DEFAULT_REGION = "RegionOne"
DEFAULT_PAGE_SIZE = 20

# An external identity backend (Keystone): `X-Auth-Token` value (None when absent) -> the caller, or
# `Unauthorized` / `Forbidden` / `ServiceUnavailable`. None means the builtin tokens in the store.
TokenAuthenticator = Callable[[str | None], AuthContext]


class WorkPromise(Protocol):
    """A worker of this process reserved for the operation being recorded under `owner`'s lease."""

    owner: str
    ttl: float

    def fulfil(self, operation: Operation) -> None: ...

    def abandon(self) -> None: ...


class Dispatch(Protocol):
    """This process's workers, as a use case that records an operation sees them
    (`reddwarf.workflows.kernel.dispatch.Dispatcher`)."""

    def promise(self, kind: str) -> WorkPromise | None: ...

    def notify(self) -> None: ...


class LiveReadGate:
    """Live requests to database servers (reads, root enable) in flight per project, and the servers that
    just failed to answer one: a tenant whose servers hang holds at most `limit` API threads, and each hung
    server costs one timeout per `hold_off` seconds, not one per request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._silent_until: dict[str, float] = {}
        self._clock = clock

    def silent(self, instance_id: str) -> bool:
        """The instance's server failed to answer a live request less than `hold_off` seconds ago."""
        with self._lock:
            until = self._silent_until.get(instance_id)
            if until is not None and until <= self._clock():
                del self._silent_until[instance_id]
                return False
            return until is not None

    def went_silent(self, instance_id: str, hold_off: float) -> None:
        with self._lock:
            self._silent_until[instance_id] = self._clock() + hold_off

    def answered(self, instance_id: str) -> None:
        with self._lock:
            self._silent_until.pop(instance_id, None)

    def enter(self, project_id: str, limit: int) -> bool:
        """Count one more live read of the project; False (and nothing counted) when it has `limit` already."""
        with self._lock:
            if self._in_flight[project_id] >= limit:
                return False
            self._in_flight[project_id] += 1
            return True

    def leave(self, project_id: str) -> None:
        with self._lock:
            self._in_flight[project_id] -= 1
            if self._in_flight[project_id] <= 0:
                del self._in_flight[project_id]


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """The settings, the metadata store, the installed engines (by datastore name), flavors (by id), a clock.

    `region` is what instance views show (Trove's `region`); `max_instances_per_project` and
    `max_volume_gb_per_project` are the project quotas (None: unlimited; the composition root passes the
    settings' finite defaults); `page_size` caps `limit` on lists (Trove's `instances_page_size`).
    `dispatch` reaches the workers embedded in this process: an operation a use case records (`enqueue`)
    is handed to a waiting one when the recording transaction commits; without it, or with none waiting,
    workers claim it. `authenticator` validates tokens when
    `settings.identity == "keystone"` (see `api.deps.get_auth`). `placement_for` says where a running
    instance lives (the runtime's `placement`, built by `reddwarf.wiring`) so that live reads can reach
    it through the engine; None where no runtime is wired (those reads answer 503). `storage_capacity`
    is the runtime's (see `Runtime.storage_capacity`): every volume is admitted against it (see
    `services.capacity`); None where no runtime is wired (nothing is admitted against the host then).
    `live_reads` caps the live reads each project has in flight (`Settings.live_reads_per_project`).
    """

    settings: Settings
    db: Database
    engines: Mapping[str, Engine]
    flavors: Mapping[str, Flavor]
    clock: Callable[[], float] = field(default=time.time)
    region: str = DEFAULT_REGION
    max_instances_per_project: int | None = None
    max_volume_gb_per_project: int | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    dispatch: Dispatch | None = None
    authenticator: TokenAuthenticator | None = None
    placement_for: Callable[[Instance], Placement] | None = None
    live_reads: LiveReadGate = field(default_factory=LiveReadGate)
    storage_capacity: Callable[[], int | None] | None = None
    # Why this deployment cannot branch instances (`Runtime.branch_refusal`); None: it can.
    branch_refusal: str | None = "no runtime is wired"

    @classmethod
    def build(
        cls,
        settings: Settings,
        db: Database,
        engines: Mapping[str, Engine],
        *,
        clock: Callable[[], float] = time.time,
        region: str = DEFAULT_REGION,
        max_instances_per_project: int | None = None,
    ) -> ServiceContext:
        """A context whose flavors come from `settings.flavors`."""
        flavors = {f.id: Flavor(id=f.id, name=f.name, ram_mb=f.ram_mb, vcpus=f.vcpus) for f in settings.flavors}
        return cls(
            settings=settings,
            db=db,
            engines=engines,
            flavors=flavors,
            clock=clock,
            region=region,
            max_instances_per_project=max_instances_per_project,
        )

    def enqueue(self, uow: UnitOfWork, kind: str, resource_id: str, payload: dict[str, Any] | None = None) -> str:
        """Record an operation in `uow`; returns its id. When a worker of this process waits for work, the
        operation is recorded leased to it and handed over as soon as `uow` commits; otherwise it is
        recorded pending and the waiting workers (if any) are woken to claim it. An operation that must wait
        for one accepted before it on the resource (`domain.operations` conflicts) is never handed over: it
        is recorded pending and claimed in its turn."""
        handed = self.dispatch is not None and not uow.operations.waits_its_turn(kind, resource_id)
        promise = self.dispatch.promise(kind) if self.dispatch is not None and handed else None
        if promise is None:
            if self.dispatch is not None:
                uow.after_commit(self.dispatch.notify)
            return uow.operations.enqueue(kind, resource_id, payload)
        uow.after_rollback(promise.abandon)  # first: whatever fails from here on releases the worker
        operation = uow.operations.enqueue_leased(
            kind, resource_id, payload, owner=promise.owner, lease_ttl=promise.ttl
        )
        uow.after_commit(lambda: promise.fulfil(operation))
        return operation.id

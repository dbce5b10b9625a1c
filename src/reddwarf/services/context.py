"""`ServiceContext`: everything a use case needs, built once by the composition root and passed explicitly."""

from __future__ import annotations

import time
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


class WorkLease(Protocol):
    @property
    def owner(self) -> str: ...

    @property
    def ttl(self) -> float: ...


class Dispatch(Protocol):
    """This process's workers, as a use case that records an operation sees them
    (`reddwarf.workflows.kernel.dispatch.Dispatcher`)."""

    def lease(self) -> WorkLease | None: ...

    def hand_over(self, operation: Operation) -> None: ...

    def notify(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Enqueued:
    """An operation a use case recorded; `leased` when it is to be handed over to a worker of this process."""

    id: str
    leased: Operation | None = None


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """The settings, the metadata store, the installed engines (by datastore name), flavors (by id), a clock.

    `region` is what instance views show (Trove's `region`); `max_instances_per_project` is the
    instance quota (None: unlimited); `page_size` caps `limit` on lists (Trove's `instances_page_size`).
    `dispatch` reaches the workers embedded in this process: an operation a use case records is handed to
    an idle one at once (`enqueue` then `start`); without it, or with none idle, workers claim it at their
    next poll. `authenticator` validates tokens when
    `settings.identity == "keystone"` (see `api.deps.get_auth`). `placement_for` says where a running
    instance lives (the runtime's `placement`, built by `reddwarf.wiring`) so that live reads can reach
    it through the engine; None where no runtime is wired (those reads answer 503).
    """

    settings: Settings
    db: Database
    engines: Mapping[str, Engine]
    flavors: Mapping[str, Flavor]
    clock: Callable[[], float] = field(default=time.time)
    region: str = DEFAULT_REGION
    max_instances_per_project: int | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    dispatch: Dispatch | None = None
    authenticator: TokenAuthenticator | None = None
    placement_for: Callable[[Instance], Placement] | None = None

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

    def enqueue(
        self, uow: UnitOfWork, kind: str, resource_id: str, payload: dict[str, Any] | None = None
    ) -> Enqueued:
        """Record an operation in `uow`: leased to an idle worker of this process when there is one."""
        lease = self.dispatch.lease() if self.dispatch is not None else None
        if lease is None:
            return Enqueued(uow.operations.enqueue(kind, resource_id, payload))
        operation = uow.operations.enqueue_leased(kind, resource_id, payload, owner=lease.owner, lease_ttl=lease.ttl)
        return Enqueued(operation.id, operation)

    def start(self, enqueued: Enqueued) -> None:
        """After the unit of work that recorded `enqueued` committed: hand it over, or wake the workers."""
        if self.dispatch is None:
            return
        if enqueued.leased is not None:
            self.dispatch.hand_over(enqueued.leased)
        else:
            self.dispatch.notify()

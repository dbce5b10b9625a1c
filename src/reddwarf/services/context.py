"""`ServiceContext`: everything a use case needs, built once by the composition root and passed explicitly."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reddwarf.domain.catalog import Flavor
from reddwarf.domain.instance import Instance
from reddwarf.domain.workload import Placement
from reddwarf.engines.base import Engine
from reddwarf.identity.context import AuthContext
from reddwarf.settings import Settings
from reddwarf.store.database import Database

DEFAULT_REGION = "RegionOne"
DEFAULT_PAGE_SIZE = 20

# An external identity backend (Keystone): `X-Auth-Token` value (None when absent) -> the caller, or
# `Unauthorized` / `Forbidden` / `ServiceUnavailable`. None means the builtin tokens in the store.
TokenAuthenticator = Callable[[str | None], AuthContext]


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """The settings, the metadata store, the installed engines (by datastore name), flavors (by id), a clock.

    `region` is what instance views show (Trove's `region`); `max_instances_per_project` is the
    instance quota (None: unlimited); `page_size` caps `limit` on lists (Trove's `instances_page_size`).
    `notify` is called after a use case enqueued an operation: embedded workers wake at once instead of
    at their next poll (workers in other processes still poll). `authenticator` validates tokens when
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
    notify: Callable[[], None] = field(default=lambda: None)
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

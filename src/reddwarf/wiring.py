"""The composition root: settings -> the concrete store, engines, runtime, services and workers.

The only module (with test fixtures) that imports concrete plugins. Everything else receives protocols.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from reddwarf.domain.catalog import Flavor
from reddwarf.engines.base import Engine
from reddwarf.engines.postgresql.engine import PostgresqlEngine
from reddwarf.engines.postgresql.settings import PostgresqlSettings
from reddwarf.runtimes.base import Runtime
from reddwarf.runtimes.local.runtime import LocalRuntime
from reddwarf.runtimes.local.settings import LocalRuntimeSettings
from reddwarf.services.context import ServiceContext
from reddwarf.settings import Settings
from reddwarf.store.database import Database
from reddwarf.workflows.kernel.worker import Worker
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.worker import build_worker

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"


def prepare_state_dir(settings: Settings) -> None:
    """The state dir holds the store, the key and instance data; server users must traverse it (0755)."""
    settings.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)


def open_database(settings: Settings) -> Database:
    prepare_state_dir(settings)
    return Database.from_url(settings.effective_database_url, key_file=settings.state_dir / KEY_FILE)


def flavors(settings: Settings) -> dict[str, Flavor]:
    return {f.id: Flavor(id=f.id, name=f.name, ram_mb=f.ram_mb, vcpus=f.vcpus) for f in settings.flavors}


def engines() -> dict[str, Engine]:
    return {"postgresql": PostgresqlEngine(PostgresqlSettings())}


def runtime(settings: Settings) -> Runtime:
    local = LocalRuntimeSettings()
    if "state_dir" not in local.model_fields_set:
        local = local.model_copy(update={"state_dir": settings.state_dir})
    return LocalRuntime(local)


@dataclass
class Components:
    settings: Settings
    db: Database
    engines: dict[str, Engine]
    runtime: Runtime
    flavors: dict[str, Flavor]
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def service_context(self) -> ServiceContext:
        return ServiceContext(settings=self.settings, db=self.db, engines=self.engines, flavors=self.flavors)

    def reconciler_deps(self) -> ReconcilerDeps:
        return ReconcilerDeps(db=self.db, engines=self.engines, runtime=self.runtime, flavors=self.flavors)

    def worker(self, worker_id: str | None = None) -> Worker:
        return build_worker(self.reconciler_deps(), self.settings, worker_id=worker_id)

    def start_workers(self, count: int) -> None:
        for n in range(count):
            worker = self.worker()
            thread = threading.Thread(target=worker.run, args=(self._stop,), name=f"worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop_workers(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads.clear()


def build(settings: Settings) -> Components:
    return Components(
        settings=settings, db=open_database(settings), engines=engines(), runtime=runtime(settings),
        flavors=flavors(settings),
    )


@contextmanager
def running(settings: Settings, *, workers: int | None = None) -> Iterator[Components]:
    """Components with the store migrated and embedded workers running; stops them on exit."""
    components = build(settings)
    components.db.upgrade()
    components.start_workers(settings.embedded_workers if workers is None else workers)
    try:
        yield components
    finally:
        components.stop_workers()
        components.db.dispose()

"""The real API app served over HTTP by uvicorn in a thread, on a real SQLite store, with a fake engine and
a fake worker that settles operations the way a reconciler would (no database servers needed).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from reddwarf.api.app import create_app
from reddwarf.domain.capabilities import Capabilities, Capability
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import Fault
from reddwarf.domain.workload import Placement, WorkloadSpec
from reddwarf.identity.bootstrap import ensure_bootstrap
from reddwarf.services.context import ServiceContext
from reddwarf.settings import Settings
from reddwarf.store.database import Database

STARTUP_DEADLINE = 10.0
FAILING_NAME_PREFIX = "doomed"
FAULT_MESSAGE = "initdb failed: No space left on device"


class FakeEngine:
    """PostgreSQL 15 as the catalogue shows it; never runs anything."""

    name = "postgresql"
    default_port = 5432
    admin_user = "reddwarf_admin"

    def capabilities(self, version: DatastoreVersion) -> Capabilities:
        return Capabilities(offered=frozenset({Capability.USERS, Capability.DATABASES}))

    def versions(self) -> list[DatastoreVersion]:
        return [DatastoreVersion(datastore="postgresql", name="15", number="15.18", bin_dir="/nonexistent")]

    def validate_spec(self, spec: InstanceSpec) -> None:
        for user in spec.users:
            if user.name == "postgres":
                raise BadRequest("User name postgres is reserved.", field="users.name")

    def validate_users(self, users: Sequence[UserSpec], field: str = "users") -> None:
        """The users API's rules: `root` belongs to the root API (as on every real engine)."""
        for index, user in enumerate(users):
            if user.name.lower() == "root":
                raise BadRequest(f"The user name {user.name!r} is reserved.", field=f"{field}[{index}].name")

    def workload(
        self,
        spec: InstanceSpec,
        version: DatastoreVersion,
        flavor: Flavor,
        placement: Placement,
        admin_password: Secret,
    ) -> WorkloadSpec:
        raise NotImplementedError

    def probe(self, placement: Placement, user: str, password: Secret, timeout: float = 2.0) -> bool:
        return False

    def ping(self, placement: Placement, timeout: float = 2.0) -> bool:
        return False

    def bootstrap(self, spec: InstanceSpec, placement: Placement, admin_password: Secret) -> None:
        raise NotImplementedError


class FakeWorker:
    """Claims operations and settles them at once: create -> ACTIVE (ERROR with a fault for names
    starting with "doomed"), delete -> deleted, restart -> done. Started only by tests that wait."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-worker", daemon=True)

    def __enter__(self) -> FakeWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with self._db.unit_of_work() as uow:
                op = uow.operations.claim("fake-worker", lease_ttl=30)
                if op is None:
                    continue
                instance = uow.instances.get(op.resource_id)
                if instance is not None and op.kind == "instance.create":
                    if instance.spec.name.startswith(FAILING_NAME_PREFIX):
                        fault = Fault(message=FAULT_MESSAGE, details="", created=time.time())
                        uow.instances.record(instance.id, Observation.FAILED, FAULT_MESSAGE, generation=0, fault=fault)
                    else:
                        uow.instances.record(instance.id, Observation.READY, "ready", generation=0)
                elif instance is not None and op.kind == "instance.delete":
                    uow.instances.mark_deleted(instance.id)
                uow.operations.complete(op.id, "fake-worker")


@dataclass(frozen=True)
class ApiServer:
    endpoint: str
    state_dir: Path
    db: Database
    admin_project: str
    admin_token: str


@contextmanager
def serve_api(base: Path) -> Iterator[ApiServer]:
    """Bootstrap a store under `base`, serve the real app on 127.0.0.1:<free port>, stop it afterwards."""
    state_dir = base / "state"
    settings = Settings(state_dir=state_dir, database_url=f"sqlite:///{base / 'reddwarf.db'}")
    db = Database.from_url(settings.effective_database_url, key_file=state_dir / "secret.key")
    db.upgrade()
    boot = ensure_bootstrap(db, settings)
    assert boot.project_id is not None
    (state_dir / "control" / "admin-project").write_text(boot.project_id + "\n")
    admin_token = boot.token_file.read_text().strip()
    app = create_app(ServiceContext.build(settings, db, {"postgresql": FakeEngine()}))

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", ws="none", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        yield ApiServer(f"http://127.0.0.1:{port}", state_dir, db, boot.project_id, admin_token)
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_DEADLINE)
        sock.close()
        db.dispose()

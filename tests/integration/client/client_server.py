"""The real API app served over HTTP by uvicorn in a thread, on a real SQLite store, with a fake engine
(`tests.fakes.engines.FakeEngine`, PostgreSQL 15 only, with backups); tests that need operations settled start
`tests.fakes.worker.FakeWorker` (no database servers needed).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from tests.fakes.engines import DEFAULT_OFFERED, FakeEngine

from reddwarf.api.app import create_app
from reddwarf.domain.capabilities import Capability
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.identity.bootstrap import ensure_bootstrap
from reddwarf.services.context import ServiceContext
from reddwarf.settings import Settings
from reddwarf.store.database import Database

STARTUP_DEADLINE = 10.0
# The one version the served catalogue has (what the CLI tests list and create).
VERSIONS = [DatastoreVersion(datastore="postgresql", name="15", number="15.18", bin_dir="/nonexistent")]


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
    engine = FakeEngine(versions=VERSIONS, offered=DEFAULT_OFFERED | {Capability.BACKUP})
    app = create_app(ServiceContext.build(settings, db, {"postgresql": engine}))

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

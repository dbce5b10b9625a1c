"""The production topology on a real PostgreSQL metadata store: an API-only `reddwarf server` and a separate
`reddwarf worker` process sharing the store (and its key file).

The worker polls only every five minutes here, so a create the API records reaches ACTIVE within the
test's deadline only because PostgreSQL's NOTIFY woke the worker; the delete likewise.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from reddwarf.client import UserRequest
from reddwarf.domain.secret import Secret
from tests.e2e.test_warm_pool import redis_login
from tests.support.metadata_postgres import create_database, drop_database, metadata_postgres, unavailable
from tests.support.server import ReddwarfProcesses, running_plane, wait_for

WORKER_POLL_INTERVAL_S = 300


@pytest.fixture(scope="module")
def plane() -> Iterator[ReddwarfProcesses]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with metadata_postgres() as server:
        database = create_database(server)
        try:
            with running_plane(
                "pgstore", "127.0.86.0/24", REDDWARF_DATABASE_URL=server.url(database),
                REDDWARF_EMBEDDED_WORKERS="0", REDDWARF_WORKER_POLL_INTERVAL=str(WORKER_POLL_INTERVAL_S),
            ) as procs:
                yield procs
        finally:
            drop_database(server, database)


def listening(state_dir: Path) -> bool:
    return any("work listener: listening" in log.read_text(errors="replace") for log in state_dir.glob("worker-*.log"))


def test_a_separate_worker_builds_and_deletes_what_the_api_records(plane: ReddwarfProcesses) -> None:
    worker = plane.start_worker()
    wait_for(lambda: listening(plane.state_dir), 60, "the worker process to listen for new operations")
    password = "pw-" + secrets.token_hex(8)
    with plane.tenant() as client:
        created = client.create_instance("pgstore", "1", 1, datastore="redis", version="7.0",
                                         users=[UserRequest(name="app", password=Secret(password))])
        view = client.wait_for_instance(created.id, timeout=60)
        tenant = redis_login(view, "app", password)
        try:
            assert tenant.ping()
        finally:
            tenant.close()
        client.delete_instance(view.id)
        client.wait_for_delete(view.id, timeout=60)
    assert worker.poll() is None, plane.log_tail()

"""On a PostgreSQL store, a worker in another process starts an operation as soon as it is recorded.

The API process records the operation (NOTIFY at commit); the worker process's listener wakes its idle
worker, which would otherwise sleep until its next poll (a minute here, so a missed notification fails
the test by its deadline instead of passing late).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tests.support.server import wait_for

from reddwarf.domain.errors import PermanentError
from reddwarf.store import Database
from reddwarf.store.records import OperationState
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.kernel.dispatch import Dispatcher
from reddwarf.workflows.kernel.worker import Worker

KIND = "instance.restart"
POLL_INTERVAL_S = 60.0
DEADLINE_S = 10.0


class Done:
    def __init__(self) -> None:
        self.ran = threading.Event()

    def run(self, ctx: OperationContext) -> None:
        ctx.step("work", self.ran.set)

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        raise AssertionError(error.message)


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True)
def test_a_worker_in_another_process_starts_recorded_work_at_once(db: Database, store_url: str, key_file: Path) -> None:
    worker_db = Database.from_url(store_url, key_file=key_file)  # the worker process's own store handle
    dispatcher = Dispatcher("worker-process", lease_ttl=30)
    listener = worker_db.work_listener(lambda kind: dispatcher.notify())
    assert listener is not None
    handler = Done()
    worker = Worker(worker_db, {KIND: handler}, lease_ttl=30, poll_interval=POLL_INTERVAL_S, deadline=900,
                    dispatcher=dispatcher)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    listener.start()
    try:
        assert listener.wait_listening(DEADLINE_S), "the listener never connected"
        thread.start()
        wait_for(lambda: dispatcher.waiting == 1, DEADLINE_S, "the worker to wait until its next poll")
        with db.unit_of_work() as uow:  # the API process records an operation
            op_id = uow.operations.enqueue(KIND, "res-1")
        assert handler.ran.wait(DEADLINE_S), "the worker did not start the operation before its next poll"
        wait_for(lambda: _state(db, op_id) == OperationState.DONE, DEADLINE_S, "the operation to complete")
    finally:
        listener.stop()
        stop.set()
        dispatcher.notify()
        if thread.ident is not None:
            thread.join(timeout=DEADLINE_S)
        worker_db.dispose()


def test_sqlite_has_no_listener_and_workers_of_other_processes_poll(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'reddwarf.db'}", key_file=tmp_path / "secret.key")
    try:
        assert database.work_listener(lambda kind: None) is None
    finally:
        database.dispose()


def _state(db: Database, op_id: str) -> str:
    with db.unit_of_work(write=False) as uow:
        op = uow.operations.get(op_id)
    assert op is not None
    return op.state

"""A metadata store outage in the middle of an operation is not the operation's failure.

The worker gives up nothing: no attempt released with a backoff, no fault on the resource, even on the last
attempt; the operation keeps its lease (which runs out unless the store returns in time) and is claimed
again once the store is back.
"""

from __future__ import annotations

import pytest

from reddwarf.domain.errors import PermanentError, StoreUnavailable
from reddwarf.store.database import Database
from reddwarf.store.records import OperationState
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.kernel.worker import Worker

KIND = "instance.restart"


class StoreGoesAway:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def run(self, ctx: OperationContext) -> None:
        raise StoreUnavailable()

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        self.failures.append(error.message)


def test_a_store_outage_during_the_last_attempt_records_no_failure(db: Database) -> None:
    with db.unit_of_work() as uow:
        op_id = uow.operations.enqueue(KIND, "res-1")
    handler = StoreGoesAway()
    worker = Worker(db, {KIND: handler}, lease_ttl=30, poll_interval=0.05, deadline=900, max_attempts=1)
    with pytest.raises(StoreUnavailable):
        worker.run_once()
    with db.unit_of_work(write=False) as uow:
        op = uow.operations.get(op_id)
    assert op is not None
    assert handler.failures == []
    assert (op.state, op.attempts, op.last_error) == (OperationState.RUNNING, 1, "")
    assert op.lease_owner == worker.worker_id

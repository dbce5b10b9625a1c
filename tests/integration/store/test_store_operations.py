"""The durable work queue: leases, races between workers, retries, supersession and the step journal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from reddwarf.store import Database, OperationState


def enqueue(db: Database, count: int = 1, kind: str = "build", resource_id: str = "i1") -> list[str]:
    with db.unit_of_work() as uow:
        return [uow.operations.enqueue(kind, resource_id, {"n": n}) for n in range(count)]


def test_enqueue_and_claim_leases_the_oldest_operation(db: Database) -> None:
    first, second = enqueue(db, 2)
    with db.unit_of_work() as uow:
        claimed = uow.operations.claim("w1", lease_ttl=30)
    assert claimed is not None
    assert claimed.id == first
    assert claimed.state == OperationState.RUNNING
    assert claimed.attempts == 1
    assert claimed.lease_owner == "w1"
    assert claimed.lease_expires is not None and claimed.lease_expires > time.time() + 20
    assert claimed.payload == {"n": 0}
    with db.unit_of_work() as uow:
        other = uow.operations.claim("w2", lease_ttl=30)
        assert other is not None and other.id == second
        assert uow.operations.claim("w3", lease_ttl=30) is None


def test_threads_racing_claim_each_operation_exactly_once(db: Database) -> None:
    expected = set(enqueue(db, 30))
    workers = 4
    barrier = threading.Barrier(workers)
    claimed: dict[str, list[str]] = {f"t{n}": [] for n in range(workers)}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            while True:
                with db.unit_of_work() as uow:
                    operation = uow.operations.claim(name, lease_ttl=300)
                if operation is None:
                    return
                claimed[name].append(operation.id)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    every_claim = [op_id for ids in claimed.values() for op_id in ids]
    assert sorted(every_claim) == sorted(expected)  # each claimed once, none lost
    with db.unit_of_work(write=False) as uow:
        operations = [uow.operations.get(op_id) for op_id in expected]
    assert all(op is not None and op.attempts == 1 for op in operations)


def test_two_threads_racing_for_one_operation_exactly_one_wins(db: Database) -> None:
    def race_once() -> list[str | None]:
        barrier = threading.Barrier(2)
        results: list[str | None] = []

        def work(name: str) -> None:
            barrier.wait(timeout=10)
            with db.unit_of_work() as uow:
                operation = uow.operations.claim(name, lease_ttl=300)
            results.append(None if operation is None else operation.id)

        threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return results

    for round_number in range(5):
        (op_id,) = enqueue(db, 1, resource_id=f"r{round_number}")
        assert sorted(race_once(), key=str) == sorted([op_id, None], key=str)


def test_two_processes_racing_claim_each_operation_exactly_once(
    db: Database, store_url: str, key_file: Path, race: Callable[[str, str, Path], list[str]]
) -> None:
    expected = set(enqueue(db, 40))
    outputs = race("claim", store_url, key_file)
    per_process = [output.split() for output in outputs]
    every_claim = [op_id for ids in per_process for op_id in ids]
    assert sorted(every_claim) == sorted(expected)
    assert set(per_process[0]).isdisjoint(per_process[1])


def test_an_expired_lease_lets_another_worker_claim(db: Database) -> None:
    (op_id,) = enqueue(db)
    start = time.time()
    with db.unit_of_work() as uow:
        assert uow.operations.claim("w1", lease_ttl=10, now=start) is not None
        # Still leased: nobody else gets it.
        assert uow.operations.claim("w2", lease_ttl=10, now=start + 5) is None
        # The lease ran out (w1 stalled or died): w2 takes over, attempt 2.
        taken = uow.operations.claim("w2", lease_ttl=10, now=start + 11)
    assert taken is not None and taken.id == op_id
    assert taken.lease_owner == "w2" and taken.attempts == 2
    with db.unit_of_work() as uow:
        # The old owner finds out it lost the lease and cannot finish the operation.
        assert not uow.operations.renew(op_id, "w1", lease_ttl=10)
        assert not uow.operations.complete(op_id, "w1")
        assert uow.operations.renew(op_id, "w2", lease_ttl=10)
        assert uow.operations.complete(op_id, "w2")
        done = uow.operations.get(op_id)
        assert done is not None and done.state == OperationState.DONE
        assert uow.operations.claim("w3", lease_ttl=10, now=start + 1000) is None
        assert uow.operations.active_for("i1") == []


def test_release_retries_after_the_delay_and_records_the_error(db: Database) -> None:
    (op_id,) = enqueue(db)
    with db.unit_of_work() as uow:
        assert uow.operations.claim("w1", lease_ttl=30) is not None
        before = time.time()
        assert uow.operations.release(op_id, "w1", delay=60, error="server not ready")
        released = uow.operations.get(op_id)
        assert released is not None
        assert released.lease_owner is None and released.lease_expires is None
        assert released.last_error == "server not ready"
        assert released.state in (OperationState.RUNNING, OperationState.PENDING)
        assert released.not_before >= before + 60
        assert uow.operations.claim("w2", lease_ttl=30) is None  # not due yet
        again = uow.operations.claim("w2", lease_ttl=30, now=released.not_before + 1)
    assert again is not None and again.id == op_id and again.attempts == 2


def test_not_before_delays_a_new_operation(db: Database) -> None:
    with db.unit_of_work() as uow:
        op_id = uow.operations.enqueue("backup", "i1", not_before=time.time() + 3600)
        assert uow.operations.claim("w1", lease_ttl=30) is None
        claimed = uow.operations.claim("w1", lease_ttl=30, now=time.time() + 3601)
    assert claimed is not None and claimed.id == op_id


def test_fail_records_the_error(db: Database) -> None:
    (op_id,) = enqueue(db)
    with db.unit_of_work() as uow:
        assert uow.operations.claim("w1", lease_ttl=30) is not None
        assert uow.operations.fail(op_id, "w1", "image not found")
        failed = uow.operations.get(op_id)
    assert failed is not None
    assert failed.state == OperationState.FAILED and failed.last_error == "image not found"


def test_supersede_retires_active_operations_of_the_given_kinds(db: Database) -> None:
    with db.unit_of_work() as uow:
        build = uow.operations.enqueue("build", "i1")
        resize = uow.operations.enqueue("resize", "i1")
        other = uow.operations.enqueue("build", "i2")
        assert uow.operations.claim("w1", lease_ttl=30) is not None  # build of i1 is running
        assert uow.operations.supersede("i1", ["build", "resize", "restart"]) == 2
        assert uow.operations.supersede("i1", ["build"]) == 0
        assert uow.operations.supersede("i1", []) == 0
        # The worker running the superseded build learns it on renew, and cannot complete it.
        assert not uow.operations.renew(build, "w1", lease_ttl=30)
        assert not uow.operations.complete(build, "w1")
        states = {op_id: uow.operations.get(op_id) for op_id in (build, resize, other)}
        assert [op.id for op in uow.operations.active_for("i2")] == [other]
        assert uow.operations.active_for("i1") == []
        assert {op.id for op in uow.operations.history_for("i1")} == {build, resize}
        assert len(uow.operations.history_for("i1", limit=1)) == 1
        assert uow.operations.history_for("i2") == []
    assert states[build] is not None and states[build].state == OperationState.SUPERSEDED
    assert states[resize] is not None and states[resize].state == OperationState.SUPERSEDED


def test_step_journal_is_idempotent_and_ordered(db: Database) -> None:
    (op_id,) = enqueue(db)
    with db.unit_of_work() as uow:
        uow.operations.record_step(op_id, "allocate", {"address": "127.0.1.5"})
        uow.operations.record_step(op_id, "init")
    with db.unit_of_work() as uow:
        first_order = uow.operations.list_steps(op_id)
        # A worker that crashed after the step and redid it records it again: no error, no duplicate.
        uow.operations.record_step(op_id, "allocate", {"address": "127.0.1.5", "port": 5432})
        uow.operations.record_step(op_id, "start")
    with db.unit_of_work(write=False) as uow:
        assert uow.operations.steps(op_id) == {
            "allocate": {"address": "127.0.1.5", "port": 5432},
            "init": {},
            "start": {},
        }
        steps = uow.operations.list_steps(op_id)
        assert [name for name, _ in steps] == ["allocate", "init", "start"]
        assert steps[:2] == first_order
        assert uow.operations.steps("unknown") == {}


def test_a_worker_lane_claims_only_its_kinds(db: Database) -> None:
    with db.unit_of_work() as uow:
        build = uow.operations.enqueue("pool.build", "slot-1")
        create = uow.operations.enqueue("instance.create", "i-1")
    with db.unit_of_work() as uow:
        tenant = uow.operations.claim("w-tenant", lease_ttl=30, skip={"pool.build", "pool.destroy"})
        assert tenant is not None and tenant.id == create
        assert uow.operations.claim("w-tenant-2", lease_ttl=30, skip={"pool.build", "pool.destroy"}) is None
        lane = uow.operations.claim("w-pool", lease_ttl=30, only={"pool.build", "pool.destroy"})
        assert lane is not None and lane.id == build


def test_an_operation_recorded_leased_is_claimable_only_once_its_lease_expires(db: Database) -> None:
    with db.unit_of_work() as uow:
        op = uow.operations.enqueue_leased("instance.create", "i-1", {"n": (1, 2)}, owner="proc:h1", lease_ttl=30)
    assert op.state == OperationState.RUNNING and op.attempts == 1 and op.lease_owner == "proc:h1"
    assert op.payload == {"n": [1, 2]}  # as a claim would read it back
    assert op.lease_expires is not None
    with db.unit_of_work(write=False) as uow:
        assert not uow.operations.any_due()
        assert uow.operations.get(op.id) == op
    with db.unit_of_work() as uow:
        assert uow.operations.claim("w1", lease_ttl=30, now=op.lease_expires - 1) is None
        claimed = uow.operations.claim("w1", lease_ttl=30, now=op.lease_expires + 1)
    assert claimed is not None and claimed.id == op.id and claimed.attempts == 2


def test_any_due_answers_for_the_lane_without_claiming(db: Database) -> None:
    with db.unit_of_work() as uow:
        uow.operations.enqueue("pool.build", "slot-1")
        uow.operations.enqueue("instance.create", "i-1", not_before=time.time() + 300)
    with db.unit_of_work(write=False) as uow:
        assert uow.operations.any_due(only={"pool.build"})
        assert not uow.operations.any_due(skip={"pool.build"})  # the create is not due yet
    with db.unit_of_work() as uow:
        assert uow.operations.claim("w-pool", lease_ttl=30, only={"pool.build"}) is not None


def test_a_worker_whose_operation_was_superseded_drops_its_lease_with_its_outcome(db: Database) -> None:
    (op_id,) = enqueue(db, 1, kind="instance.create")
    with db.unit_of_work() as uow:
        assert uow.operations.claim("w1", lease_ttl=30) is not None
    with db.unit_of_work() as uow:
        assert uow.operations.supersede("i1", ["instance.create"]) == 1
    with db.unit_of_work() as uow:
        assert not uow.operations.complete(op_id, "w1")
    with db.unit_of_work(write=False) as uow:
        assert uow.operations.live_leases("i1") == []  # whatever superseded it need not wait for the lease
        op = uow.operations.get(op_id)
    assert op is not None and op.state == OperationState.SUPERSEDED

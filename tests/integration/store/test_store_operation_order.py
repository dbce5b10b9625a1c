"""Conflicting operations on one resource run in the order they were accepted (`domain.operations`): the
claim skips an operation while one accepted before it, pending or running, conflicts with it, and takes
operations that do not conflict (another resource, another lane) meanwhile."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from reddwarf.domain.operations import Kind
from reddwarf.store import Database


def enqueue(db: Database, kind: Kind, resource_id: str) -> str:
    with db.unit_of_work() as uow:
        return uow.operations.enqueue(kind, resource_id, {})


def claim(db: Database, worker: str) -> str | None:
    with db.unit_of_work() as uow:
        op = uow.operations.claim(worker, lease_ttl=30)
        return None if op is None else op.id


def test_a_restart_waits_for_the_create_and_account_writes_run_one_at_a_time(db: Database) -> None:
    create = enqueue(db, Kind.INSTANCE_CREATE, "i1")
    restart = enqueue(db, Kind.INSTANCE_RESTART, "i1")
    grant = enqueue(db, Kind.USERS_GRANT, "i1")
    other = enqueue(db, Kind.INSTANCE_CREATE, "i2")

    assert claim(db, "w1") == create
    assert claim(db, "w2") == other  # i1's restart and grant wait; i2's create does not
    assert claim(db, "w3") is None
    with db.unit_of_work(write=False) as uow:
        assert not uow.operations.any_due()  # nothing whose turn it is: an idle worker takes no write lock
    with db.unit_of_work() as uow:
        assert uow.operations.complete(create, "w1")
    assert claim(db, "w3") == restart
    assert claim(db, "w4") is None  # the grant waits for the restart, accepted before it
    with db.unit_of_work() as uow:
        assert uow.operations.release(restart, "w3", delay=0, error="not yet")  # waits, lease released
    assert claim(db, "w4") == restart  # it kept its place ahead of the grant
    with db.unit_of_work() as uow:
        assert uow.operations.complete(restart, "w4")
    assert claim(db, "w5") == grant


def test_many_waiting_operations_do_not_hide_one_that_may_start(db: Database) -> None:
    create = enqueue(db, Kind.INSTANCE_CREATE, "busy")
    assert claim(db, "w1") == create
    for n in range(30):
        enqueue(db, Kind.DATABASES_CREATE, "busy") if n % 2 else enqueue(db, Kind.USERS_GRANT, "busy")
    free = enqueue(db, Kind.USERS_CREATE, "idle")
    assert claim(db, "w2") == free


def test_an_operation_accepted_behind_a_conflicting_one_waits_its_turn(db: Database) -> None:
    enqueue(db, Kind.INSTANCE_CREATE, "i1")
    with db.unit_of_work(write=False) as uow:
        assert uow.operations.waits_its_turn(Kind.USERS_CREATE, "i1")
        assert uow.operations.waits_its_turn(Kind.INSTANCE_DELETE, "i1")
        assert not uow.operations.waits_its_turn(Kind.USERS_CREATE, "i2")
        assert not uow.operations.waits_its_turn(Kind.POOL_BUILD, "slot-1")


def test_two_worker_processes_run_conflicting_operations_one_at_a_time_in_order(
    db: Database, store_url: str, key_file: Path, race: Callable[[str, str, Path], list[str]]
) -> None:
    """On SQLite and PostgreSQL, two processes claiming at once never run two conflicting operations of
    one instance together, and run them in the order they were accepted; other instances' operations run
    beside them."""
    kinds = [Kind.DATABASES_CREATE, Kind.USERS_CREATE, Kind.USERS_GRANT, Kind.USERS_REVOKE, Kind.USERS_DELETE]
    accepted = {resource: [enqueue(db, kind, resource) for kind in kinds] for resource in ("a", "b", "c")}

    ran: dict[str, tuple[float, float]] = {}
    for output in race("run", store_url, key_file):
        for line in output.splitlines():
            op_id, started, ended = line.split()
            ran[op_id] = (float(started), float(ended))

    assert set(ran) == {op for ops in accepted.values() for op in ops}
    for ops in accepted.values():
        for earlier, later in itertools.pairwise(ops):
            assert ran[earlier][1] <= ran[later][0], "an account write started before the one accepted before it ended"

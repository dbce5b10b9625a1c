"""Address allocations: a (address, port) pair is never handed to two instances."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from tests.fakes.runtime import FakeRuntime

from reddwarf.domain.errors import TemporaryError
from reddwarf.engines.base import Engine
from reddwarf.store import Database
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.lifecycle import allocate_address


def test_a_taken_pair_is_refused_and_the_unit_of_work_stays_usable(db: Database) -> None:
    with db.unit_of_work() as uow:
        assert uow.addresses.claim("i1", "127.0.1.2", 5432)
        assert uow.addresses.claim("i1", "127.0.1.2", 5432)  # idempotent for its holder
        assert not uow.addresses.claim("i2", "127.0.1.2", 5432)
        # The failed insert rolled back to its savepoint only: keep working in the same transaction.
        assert uow.addresses.claim("i2", "127.0.1.3", 5432)
        assert uow.addresses.claim("i3", "127.0.1.2", 3306)
    with db.unit_of_work(write=False) as uow:
        assert uow.addresses.get("i1") == ("127.0.1.2", 5432)
        assert uow.addresses.get("i2") == ("127.0.1.3", 5432)
        assert uow.addresses.get("nobody") is None
        assert uow.addresses.in_use() == {("127.0.1.2", 5432), ("127.0.1.3", 5432), ("127.0.1.2", 3306)}


def test_a_pair_taken_in_another_transaction_is_refused(db: Database) -> None:
    with db.unit_of_work() as uow:
        assert uow.addresses.claim("i1", "127.0.1.9", 6379)
    with db.unit_of_work() as uow:
        assert not uow.addresses.claim("i2", "127.0.1.9", 6379)


def test_release_frees_the_pair(db: Database) -> None:
    with db.unit_of_work() as uow:
        assert uow.addresses.claim("i1", "127.0.1.2", 5432)
    with db.unit_of_work() as uow:
        uow.addresses.release("i1")
        uow.addresses.release("i1")  # idempotent
    with db.unit_of_work() as uow:
        assert uow.addresses.claim("i2", "127.0.1.2", 5432)
        assert uow.addresses.in_use() == {("127.0.1.2", 5432)}


def test_an_instance_holds_one_pair(db: Database) -> None:
    with db.unit_of_work() as uow:
        assert uow.addresses.claim("i1", "127.0.1.2", 5432)
        with pytest.raises(ValueError, match="already holds"):
            uow.addresses.claim("i1", "127.0.1.4", 5432)


def test_an_address_whose_extra_listener_port_is_held_is_passed_over(db: Database) -> None:
    """Redis listens on its port and on port + 1000 (replication): an address where someone holds the second,
    or where another holder's port is one offset away, is not given out."""
    runtime = FakeRuntime(addresses=("127.0.1.7", "127.0.1.8", "127.0.1.9"))
    redis_like = cast(Engine, SimpleNamespace(extra_port_offsets=(1000,)))
    deps = ReconcilerDeps(db=db, engines={"redis": redis_like}, runtime=runtime, flavors={})
    runtime.held.add(("127.0.1.7", 7379))  # a squatter on the first address's replication port
    first = allocate_address(deps, "a", 6379, offsets=(1000,))
    assert first == {"address": "127.0.1.8", "port": 6379}
    b = allocate_address(deps, "b", 7379, offsets=(1000,))
    assert b == {"address": "127.0.1.9", "port": 7379}  # .7's is held, .8's is a's replication port
    # 127.0.1.8:6379 is a's: its replication port 7379 is not given to anyone, even while a is stopped.
    with pytest.raises(TemporaryError, match="No free address"):
        allocate_address(deps, "c", 7379, offsets=())  # .7's is held, .8's is a's, .9's is b's
    runtime.held.clear()
    assert allocate_address(deps, "c", 7379, offsets=()) == {"address": "127.0.1.7", "port": 7379}

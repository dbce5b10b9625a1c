"""Address allocations: a (address, port) pair is never handed to two instances."""

from __future__ import annotations

import pytest

from reddwarf.store import Database


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

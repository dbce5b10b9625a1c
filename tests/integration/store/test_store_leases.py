"""Named leases (`leases` table): one owner at a time, renewed by its owner, taken over once expired."""

from __future__ import annotations

import threading
import time

from reddwarf.store import Database


def hold(db: Database, owner: str, ttl: float = 30.0, name: str = "health") -> bool:
    with db.unit_of_work() as uow:
        return uow.leases.hold(name, owner, ttl)


def test_one_owner_at_a_time_and_the_owner_renews(db: Database) -> None:
    assert hold(db, "p1")
    assert not hold(db, "p2")
    assert hold(db, "p1")  # a renewal
    assert hold(db, "p2", name="other")  # names are independent


def test_an_expired_lease_is_taken_over_and_a_released_one_at_once(db: Database) -> None:
    assert hold(db, "p1", ttl=0.2)
    deadline = time.monotonic() + 10
    while not hold(db, "p2"):  # p1 stopped renewing: p2 takes over once the lease has expired
        assert time.monotonic() < deadline, "the expired lease was never taken over"
        time.sleep(0.05)
    assert not hold(db, "p1")
    with db.unit_of_work() as uow:
        uow.leases.release("health", "p1")  # not the owner: nothing happens
    assert not hold(db, "p3")
    with db.unit_of_work() as uow:
        uow.leases.release("health", "p2")
    assert hold(db, "p3")


def test_threads_racing_for_a_free_lease_give_it_to_exactly_one(db: Database) -> None:
    racers = 6
    barrier = threading.Barrier(racers)
    won: list[str] = []
    errors: list[BaseException] = []

    def race(owner: str) -> None:
        try:
            barrier.wait(10)
            if hold(db, owner):
                won.append(owner)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(f"p{n}",)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(won) == 1, won

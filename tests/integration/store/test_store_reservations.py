"""Storage reservations: admitted within the limit only, released, handed from a warm-pool slot to its
instance, and made for the volumes an older store already had when it is migrated."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from alembic import command
from test_store_instances import make_instance

from reddwarf.domain.capacity import GIB
from reddwarf.domain.pool import PoolProfile, SlotState
from reddwarf.domain.secret import Secret
from reddwarf.store import Database

PG15 = PoolProfile("postgresql", "15", "1", 1)


def test_reservations_are_admitted_up_to_the_limit_and_released(db: Database) -> None:
    with db.unit_of_work() as uow:
        assert uow.reservations.reserve("a", "instance", 2 * GIB, 3 * GIB)
        assert not uow.reservations.reserve("b", "instance", 2 * GIB, 3 * GIB)  # 4 GiB > 3 GiB
        assert uow.reservations.reserve("a", "instance", 2 * GIB, 3 * GIB)  # already held: nothing more
        assert uow.reservations.reserve("c", "instance", GIB, 3 * GIB)
        assert uow.reservations.total() == 3 * GIB
        assert uow.reservations.reserve("d", "instance", GIB, None)  # no limit: the runtime accounts nothing
    with db.unit_of_work() as uow:
        uow.reservations.release("a")
        uow.reservations.release("a")
        assert uow.reservations.held("a") is None
        assert uow.reservations.total() == 2 * GIB


def test_a_slot_taken_by_an_instance_hands_it_its_reservation(db: Database) -> None:
    instance = make_instance()
    with db.unit_of_work() as uow:
        slot_id = uow.pool.add(PG15)
        assert uow.reservations.reserve(slot_id, "pool_slot", GIB, None)
        uow.addresses.claim(slot_id, "127.0.1.9", 5432)
        uow.secrets.put(slot_id, "admin", Secret("slot-password"))
        uow.pool.mark(slot_id, SlotState.READY, only_from={SlotState.BUILDING})
    with db.unit_of_work() as uow:
        assert uow.pool.take(PG15, instance.id) is not None
        assert uow.reservations.held(slot_id) is None
        assert uow.reservations.held(instance.id) == GIB
    with db.unit_of_work() as uow:
        other = uow.pool.add(PG15)
        uow.reservations.reserve(other, "pool_slot", GIB, None)
        uow.pool.remove(other)
        assert uow.reservations.held(other) is None


def test_migrating_an_older_store_reserves_the_volumes_it_already_has(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database.from_url(f"sqlite:///{path}", key_file=tmp_path / "secret.key")
    with db._engine.connect() as connection:  # the store as revision 0004 left it
        command.upgrade(Database._alembic_config(connection), "0004")
        connection.commit()
    spec = json.dumps({"volume_size_gb": 3})
    moment = time.time()
    with sqlite3.connect(path) as raw:
        raw.execute(
            "INSERT INTO instances (id, project_id, name, spec, status, operating_status, conditions, labels,"
            " generation, deleting, deleted_at, created, updated) VALUES"
            " ('live', 'p', 'db1', ?, 'ACTIVE', 'HEALTHY', '[]', '{}', 1, 0, NULL, ?, ?),"
            " ('gone', 'p', 'db2', ?, 'ACTIVE', 'HEALTHY', '[]', '{}', 1, 1, ?, ?, ?)",
            (spec, moment, moment, spec, moment, moment, moment),
        )
        raw.execute(
            "INSERT INTO pool_slots (id, datastore, version, flavor_id, volume_gb, state, error, fingerprint,"
            " created, updated) VALUES ('slot', 'postgresql', '15', '1', 1, 'ready', '', '', ?, ?)",
            (moment, moment),
        )
    db.upgrade()
    with db.unit_of_work(write=False) as uow:
        assert (uow.reservations.held("live"), uow.reservations.held("gone")) == (3 * GIB, None)
        assert uow.reservations.held("slot") == GIB
    db.dispose()

"""Status as conditions in the store, on SQLite and PostgreSQL: a compare-and-swap that only one of two writers
expecting the same version wins, the loser's observation applied on top of the winner's (nothing lost), the
statuses stored as derived from the conditions when written, observed generation and transition times kept,
and instances recorded before conditions existed given theirs by the migration."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from test_store_instances import make_instance

from reddwarf.domain.conditions import Observation, Reason, advance, derive
from reddwarf.domain.errors import TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.status import ConditionType, InstanceStatus, OperatingStatus
from reddwarf.store import Database
from reddwarf.store.codec import conditions_from_json

READY, PROGRESSING, DEGRADED = ConditionType.READY, ConditionType.PROGRESSING, ConditionType.DEGRADED


def _active(db: Database) -> Instance:
    """An instance as a finished create leaves it: CREATING then READY, written through the store."""
    instance = make_instance()
    instance.conditions = advance((), Observation.CREATING, "create requested", time.time())
    with db.unit_of_work() as uow:
        uow.instances.add(instance)
        uow.instances.record(instance.id, Observation.READY, "ready", generation=0)
    return _get(db, instance.id)


def _get(db: Database, instance_id: str) -> Instance:
    with db.unit_of_work(write=False) as uow:
        found = uow.instances.get(instance_id)
    assert found is not None
    return found


def _stored_columns(url: str, instance_id: str) -> tuple[str, str, list[object]]:
    """The status columns and the conditions exactly as stored, read with plain SQL (no repository)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT status, operating_status, conditions FROM instances WHERE id = :id"), {"id": instance_id}
            ).one()
    finally:
        engine.dispose()
    conditions = row.conditions if isinstance(row.conditions, list) else json.loads(row.conditions)
    return row.status, row.operating_status, conditions


def _by_type(instance: Instance) -> dict[ConditionType, tuple[bool, str]]:
    return {condition.type: (condition.status, condition.reason) for condition in instance.conditions}


def test_of_two_writers_expecting_the_same_version_one_wins_and_the_loser_writes_on_top(db: Database) -> None:
    seen = _active(db)  # both writers read this version
    rebooting = advance(seen.conditions, Observation.REBOOTING, "restart requested", time.time())
    admin_lost = advance(seen.conditions, Observation.ADMIN_LOST, "admin lost", time.time())

    with db.unit_of_work() as uow:
        first = uow.instances.transition(seen.id, seen.status_version, rebooting, observed_generation=0)
    with db.unit_of_work() as uow:
        second = uow.instances.transition(seen.id, seen.status_version, admin_lost, observed_generation=0)
    assert (first, second) == (True, False)
    assert _get(db, seen.id).conditions == rebooting  # the loser wrote nothing

    # The loser reads again and applies its observation on top: both changes hold.
    with db.unit_of_work() as uow:
        uow.instances.record(seen.id, Observation.ADMIN_LOST, "admin lost", generation=0)
    after = _get(db, seen.id)
    assert _by_type(after) == {
        READY: (False, Reason.REBOOTING),
        PROGRESSING: (True, Reason.REBOOTING),
        DEGRADED: (True, Reason.ADMIN_ACCESS_LOST),
    }
    assert (after.status, after.operating_status) == (InstanceStatus.REBOOT, OperatingStatus.NONE)
    assert after.status_version == seen.status_version + 2


def test_a_concurrent_writer_waits_for_the_winner_then_retries_on_top_of_it(
    db: Database, store_url: str, backend: str
) -> None:
    """Writer A's compare-and-swap is written but not committed when B reads and tries its own: B waits for A
    (PostgreSQL: A holds the row; SQLite: A holds the write lock), then B's observation is applied on top of
    A's, not instead of it."""
    seen = _active(db)
    b_result: list[tuple[InstanceStatus, OperatingStatus] | BaseException] = []

    def writer_b() -> None:
        try:
            with db.unit_of_work() as uow:
                b_result.append(uow.instances.record(seen.id, Observation.ADMIN_LOST, "admin lost", generation=0))
        except BaseException as exc:  # handed to the test thread
            b_result.append(exc)

    thread = threading.Thread(target=writer_b)
    with db.unit_of_work() as uow:
        uow.instances.record(seen.id, Observation.REBOOTING, "restart requested", generation=0)
        thread.start()
        if backend == "postgresql":  # (on SQLite, B cannot even begin before A commits)
            _wait_for_a_lock_wait(store_url)  # B has read the old version and its UPDATE waits for A's row
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert b_result == [(InstanceStatus.REBOOT, OperatingStatus.NONE)]
    after = _get(db, seen.id)
    assert _by_type(after)[PROGRESSING] == (True, Reason.REBOOTING)
    assert _by_type(after)[DEGRADED] == (True, Reason.ADMIN_ACCESS_LOST)
    assert after.status_version == seen.status_version + 2


def _wait_for_a_lock_wait(url: str) -> None:
    """Until another session of this database waits for a row lock (deadline 10 s)."""
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            with engine.connect() as connection:
                waiting = connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            if waiting:
                return
            assert time.monotonic() < deadline, "the second writer never waited for the first"
            time.sleep(0.01)
    finally:
        engine.dispose()


def test_a_writer_that_keeps_losing_gives_up_with_a_temporary_error(db: Database) -> None:
    seen = _active(db)
    with pytest.raises(TemporaryError), db.unit_of_work() as uow:
        uow.instances.record(seen.id, Observation.ADMIN_LOST, "admin lost", generation=0, attempts=0)


def test_statuses_are_stored_as_derived_from_the_conditions_when_written(db: Database, store_url: str) -> None:
    instance = make_instance()
    instance.conditions = advance((), Observation.CREATING, "create requested", time.time())
    with db.unit_of_work() as uow:
        uow.instances.add(instance)
    seen = []
    for observation in (
        Observation.READY, Observation.ENDPOINT_SILENT, Observation.ENDPOINT_ANSWERS, Observation.SERVER_DOWN,
        Observation.ENDPOINT_ANSWERS, Observation.REBOOTING, Observation.FAILED, Observation.DELETING,
    ):
        with db.unit_of_work() as uow:
            returned = uow.instances.record(instance.id, observation, observation.value, generation=0)
        status, operating, raw = _stored_columns(store_url, instance.id)
        assert (InstanceStatus(status), OperatingStatus(operating)) == returned == derive(conditions_from_json(raw))
        seen.append(status)
    assert seen == ["ACTIVE", "ACTIVE", "ACTIVE", "SHUTDOWN", "ACTIVE", "REBOOT", "ERROR", "SHUTDOWN"]


def test_observed_generation_and_transition_times_are_recorded(db: Database) -> None:
    instance = make_instance()
    instance.conditions = advance((), Observation.CREATING, "create requested", 1000.0)
    with db.unit_of_work() as uow:
        uow.instances.add(instance)
        uow.instances.rename(instance.id, "renamed")  # generation 1
    before = time.time()
    with db.unit_of_work() as uow:
        uow.instances.record(instance.id, Observation.READY, "ready", generation=1)
    after = time.time()
    ready = _get(db, instance.id)
    assert (ready.generation, ready.observed_generation) == (1, 1)
    since = {condition.type: condition.since for condition in ready.conditions}
    assert before <= since[READY] <= after and before <= since[PROGRESSING] <= after
    assert since[DEGRADED] == 1000.0  # still False: its time did not move

    with db.unit_of_work() as uow:  # a writer that acted on an older spec never moves it back
        uow.instances.record(instance.id, Observation.ENDPOINT_ANSWERS, "endpoint answers", generation=0)
    assert _get(db, instance.id).observed_generation == 1


@pytest.mark.parametrize("deleting", [False, True])
def test_the_migration_gives_older_instances_the_conditions_of_their_status(
    empty_store_url: str, key_file: Path, deleting: bool
) -> None:
    database = Database.from_url(empty_store_url, key_file=key_file)
    rows = {
        "built": ("BUILD", ""),
        "active": ("ACTIVE", "HEALTHY"),
        "silent": ("ACTIVE", "ERROR"),
        "down": ("SHUTDOWN", "SHUTDOWN"),
        "failed": ("ERROR", "ERROR"),
        "rebooting": ("REBOOT", ""),
    }
    try:
        with database._engine.connect() as connection:  # the store as revision 0006 left it
            command.upgrade(Database._alembic_config(connection), "0006")
            connection.commit()
            for name, (status, operating) in rows.items():
                connection.execute(
                    text(
                        "INSERT INTO instances (id, project_id, name, spec, status, operating_status, conditions,"
                        " labels, generation, deleting, deleted_at, created, updated) VALUES (:id, 'p', :id,"
                        " '{}', :status, :operating, '[]', '{}', 0, :deleting, NULL, 1.0, 2.0)"
                    ),
                    {"id": name, "status": status, "operating": operating, "deleting": deleting},
                )
            connection.commit()
        database.upgrade()
        for name, (status, operating) in rows.items():
            conditions = conditions_from_json(_stored_columns(empty_store_url, name)[2])
            expected = (InstanceStatus(status), OperatingStatus(operating))
            if deleting and status == "SHUTDOWN":
                expected = (InstanceStatus.SHUTDOWN, OperatingStatus.SHUTDOWN)
            assert derive(conditions) == expected, name
            assert len(conditions) == 3 and {c.since for c in conditions} == {2.0}
    finally:
        database.dispose()

"""Instances: round trip of spec and status, pagination, soft delete, and passwords kept encrypted."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.exc import DBAPIError

from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import BadRequest, NotFound
from reddwarf.domain.instance import DatabaseSpec, Endpoint, Instance, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import ConditionType, Fault, InstanceStatus, OperatingStatus
from reddwarf.store import ADMIN_SECRET, Database

PASSWORD = "Tr0ub4dor-and-3-horses"
ADMIN_PASSWORD = "adm1n-s3cret-never-plain"


def make_instance(project_id: str = "p1", name: str = "db1", created: float = 0.0) -> Instance:
    return Instance(
        id=str(uuid.uuid4()),
        project_id=project_id,
        spec=InstanceSpec(
            name=name,
            flavor_id="2",
            volume_size_gb=2,
            datastore="postgresql",
            datastore_version="15",
            databases=(DatabaseSpec("app", character_set="UTF8"),),
            users=(UserSpec("alice", Secret(PASSWORD), databases=("app",)),),
        ),
        status=InstanceStatus.BUILD,
        created=created,
        labels={"tier": "gold"},
    )


def test_add_then_get_gives_back_the_instance_with_its_passwords(db: Database) -> None:
    instance = make_instance()
    with db.unit_of_work() as uow:
        uow.instances.add(instance)
    with db.unit_of_work(write=False) as uow:
        stored = uow.instances.get(instance.id)
    assert stored is not None
    assert stored.spec == instance.spec
    assert stored.spec.users[0].password.reveal() == PASSWORD
    assert stored.status is InstanceStatus.BUILD
    assert stored.operating_status is OperatingStatus.NONE
    assert stored.labels == {"tier": "gold"}
    assert stored.created > 0 and stored.updated == stored.created


def test_an_exception_rolls_the_unit_of_work_back(db: Database) -> None:
    instance = make_instance()
    with pytest.raises(RuntimeError), db.unit_of_work() as uow:
        uow.instances.add(instance)
        raise RuntimeError("boom")
    with db.unit_of_work(write=False) as uow:
        assert uow.instances.get(instance.id) is None
        assert uow.secrets.get(instance.id, "user:alice@%") is None


def test_status_endpoint_fault_and_conditions_are_recorded(db: Database) -> None:
    instance = make_instance()
    with db.unit_of_work() as uow:
        uow.instances.add(instance)
    with db.unit_of_work() as uow:
        recorded = uow.instances.record(
            instance.id, Observation.FAILED, "initdb failed", generation=0,
            fault=Fault("disk full", "no space left on device", 99.0), volume_used_bytes=1234,
        )
        uow.instances.set_endpoint(instance.id, Endpoint("127.0.1.7", 5432))
    assert recorded == (InstanceStatus.ERROR, OperatingStatus.ERROR)
    with db.unit_of_work(write=False) as uow:
        stored = uow.instances.get(instance.id)
    assert stored is not None
    assert (stored.status, stored.operating_status) == (InstanceStatus.ERROR, OperatingStatus.ERROR)
    assert stored.fault == Fault("disk full", "no space left on device", 99.0)
    ready = stored.conditions[0]
    assert (ready.type, ready.status, ready.reason, ready.message) == (
        ConditionType.READY, False, "OperationFailed", "initdb failed"
    )
    assert stored.volume_used_bytes == 1234
    assert stored.endpoint == Endpoint("127.0.1.7", 5432)
    assert stored.updated >= stored.created

    with db.unit_of_work() as uow:
        uow.instances.record(instance.id, Observation.READY, "ready", generation=0, clear_fault=True)
        uow.instances.set_endpoint(instance.id, None)
    with db.unit_of_work(write=False) as uow:
        stored = uow.instances.get(instance.id)
    assert stored is not None
    assert (stored.status, stored.operating_status) == (InstanceStatus.ACTIVE, OperatingStatus.HEALTHY)
    assert stored.fault is None and stored.endpoint is None
    assert stored.volume_used_bytes == 1234  # untouched when not given


def test_status_writes_to_an_unknown_instance_raise_not_found_or_lose(db: Database) -> None:
    with pytest.raises(NotFound), db.unit_of_work() as uow:
        uow.instances.record("nope", Observation.READY, "ready", generation=0)
    with db.unit_of_work() as uow:
        assert not uow.instances.transition("nope", 0, (), observed_generation=0)


def test_an_instance_is_recorded_only_with_the_status_its_conditions_give(db: Database) -> None:
    instance = make_instance()
    instance.status = InstanceStatus.ACTIVE  # its conditions (none) say BUILD
    with pytest.raises(ValueError, match="not the one its conditions give"), db.unit_of_work() as uow:
        uow.instances.add(instance)


def test_rename_and_update_spec_bump_the_generation(db: Database) -> None:
    instance = make_instance()
    with db.unit_of_work() as uow:
        uow.instances.add(instance)
        uow.instances.rename(instance.id, "renamed")
    with db.unit_of_work() as uow:
        stored = uow.instances.get(instance.id)
        assert stored is not None
        assert stored.spec.name == "renamed" and stored.generation == 1
        assert uow.instances.name_in_use("p1", "renamed")
        assert not uow.instances.name_in_use("p1", "db1")
        new_spec = InstanceSpec(
            name="renamed",
            flavor_id="3",
            volume_size_gb=4,
            datastore="postgresql",
            datastore_version="15",
            users=(UserSpec("bob", Secret("bob-pass")),),
        )
        assert uow.instances.update_spec(instance.id, new_spec) == 2
    with db.unit_of_work(write=False) as uow:
        stored = uow.instances.get(instance.id)
        assert stored is not None
        assert stored.spec == new_spec
        assert uow.secrets.get(instance.id, "user:alice@%") is None


def test_list_paginates_by_creation_order_and_project(db: Database) -> None:
    ids = []
    with db.unit_of_work() as uow:
        for index in range(5):
            instance = make_instance(name=f"db{index}", created=1000.0 + index)
            uow.instances.add(instance)
            ids.append(instance.id)
        uow.instances.add(make_instance(project_id="p2", created=999.0))
    with db.unit_of_work(write=False) as uow:
        assert [i.id for i in uow.instances.list("p1")] == ids
        first = uow.instances.list("p1", limit=2)
        second = uow.instances.list("p1", limit=2, marker=first[-1].id)
        third = uow.instances.list("p1", limit=2, marker=second[-1].id)
        assert [i.id for i in first + second + third] == ids
        assert len(uow.instances.list(None)) == 6
        assert uow.instances.count("p1") == 5
        with pytest.raises(BadRequest):
            uow.instances.list("p1", marker="unknown")


def test_same_created_time_is_ordered_by_id(db: Database) -> None:
    with db.unit_of_work() as uow:
        for _ in range(4):
            uow.instances.add(make_instance(created=500.0))
    with db.unit_of_work(write=False) as uow:
        everything = [i.id for i in uow.instances.list("p1")]
        assert everything == sorted(everything)
        first = uow.instances.list("p1", limit=3)
        rest = uow.instances.list("p1", marker=first[-1].id)
        assert [i.id for i in first + rest] == everything


def test_soft_delete_hides_the_instance_unless_asked(db: Database) -> None:
    keep, gone = make_instance(name="keep"), make_instance(name="gone")
    with db.unit_of_work() as uow:
        uow.instances.add(keep)
        uow.instances.add(gone)
        uow.instances.mark_deleting(gone.id)
    with db.unit_of_work(write=False) as uow:
        deleting = uow.instances.get(gone.id)
        assert deleting is not None and deleting.deleting
    with db.unit_of_work() as uow:
        uow.instances.mark_deleted(gone.id)
        uow.instances.mark_deleted(gone.id)  # idempotent
        # A deleted instance still anchors pagination.
        assert [i.id for i in uow.instances.list("p1", marker=gone.id)] in ([], [keep.id])
    with db.unit_of_work(write=False) as uow:
        assert uow.instances.get(gone.id) is None
        assert uow.instances.get(gone.id, include_deleted=True) is not None
        assert [i.id for i in uow.instances.list("p1")] == [keep.id]
        assert {i.id for i in uow.instances.list("p1", include_deleted=True)} == {keep.id, gone.id}
        assert uow.instances.count("p1") == 1
        assert not uow.instances.name_in_use("p1", "gone")


def test_passwords_are_never_stored_in_plain_text(db: Database, store_url: str, tmp_path: Path) -> None:
    instance = make_instance()
    with db.unit_of_work() as uow:
        uow.instances.add(instance)
        uow.secrets.put(instance.id, ADMIN_SECRET, Secret(ADMIN_PASSWORD))
    with db.unit_of_work(write=False) as uow:
        admin = uow.secrets.get(instance.id, ADMIN_SECRET)
        assert admin is not None and admin.reveal() == ADMIN_PASSWORD

    engine = create_engine(store_url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        with engine.connect() as connection:
            dump = repr([list(connection.execute(select(table))) for table in tables.sorted_tables])
    finally:
        engine.dispose()
    assert "alice" in dump  # the dump really holds the instance
    assert PASSWORD not in dump and ADMIN_PASSWORD not in dump

    if db.dialect == "sqlite":
        db.dispose()
        raw = b"".join(path.read_bytes() for path in tmp_path.glob("reddwarf.db*"))
        assert b"alice" in raw
        assert PASSWORD.encode() not in raw and ADMIN_PASSWORD.encode() not in raw


def test_delete_owner_forgets_the_secrets(db: Database) -> None:
    instance = make_instance()
    with db.unit_of_work() as uow:
        uow.instances.add(instance)
        uow.secrets.put(instance.id, ADMIN_SECRET, Secret("x"))
        uow.secrets.put(instance.id, ADMIN_SECRET, Secret("y"))  # upsert
        assert uow.secrets.get(instance.id, ADMIN_SECRET) == Secret("y")
        uow.secrets.delete_owner(instance.id)
    with db.unit_of_work(write=False) as uow:
        assert uow.secrets.get(instance.id, ADMIN_SECRET) is None
        stored = uow.instances.get(instance.id)
        assert stored is not None and stored.spec.users[0].password == Secret("")


def test_read_only_units_of_work_refuse_writes(db: Database) -> None:
    with pytest.raises(DBAPIError, match=r"(?i)read.?only"), db.unit_of_work(write=False) as uow:
        uow.events.add("r1", "created", "should not be written")


def test_same_user_name_on_two_hosts_keeps_two_passwords(db: Database) -> None:
    base = make_instance()
    spec = InstanceSpec(
        name="db1", flavor_id="1", volume_size_gb=1, datastore="mariadb", datastore_version="10.11",
        users=(
            UserSpec("app", Secret("from-anywhere"), host="%"),
            UserSpec("app", Secret("from-lan"), host="10.0.0.%"),
        ),
    )
    instance = Instance(id=base.id, project_id=base.project_id, spec=spec, status=base.status)
    with db.unit_of_work() as uow:
        uow.instances.add(instance)
    with db.unit_of_work(write=False) as uow:
        stored = uow.instances.get(instance.id)
    assert stored is not None
    passwords = {(u.host, u.password.reveal()) for u in stored.spec.users}
    assert passwords == {("%", "from-anywhere"), ("10.0.0.%", "from-lan")}


def test_concurrent_quota_checks_of_one_project_are_serialised(db: Database, backend: str, store_url: str) -> None:
    """Two creates racing for the last quota slot: the second counts the first's instance, never both 0."""
    if backend == "sqlite":
        # Write units of work are already serial on SQLite (BEGIN IMMEDIATE); the count is plain.
        with db.unit_of_work() as uow:
            uow.instances.add(make_instance(project_id="quota"))
        with db.unit_of_work() as uow:
            assert uow.instances.count_for_quota("quota") == 1
        return
    first_counted = threading.Event()
    second_result: list[int] = []

    def second() -> None:
        with db.unit_of_work() as uow:
            second_result.append(uow.instances.count_for_quota("quota"))

    with db.unit_of_work() as uow:
        assert uow.instances.count_for_quota("quota") == 0
        first_counted.set()
        racer = threading.Thread(target=second)
        racer.start()
        wait_until(lambda: _someone_waits_on_an_advisory_lock(store_url), 10, "the second check to wait for the first")
        uow.instances.add(make_instance(project_id="quota"))
    racer.join(timeout=10)
    assert second_result == [1]


def _someone_waits_on_an_advisory_lock(store_url: str) -> bool:
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            waiting = conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
            ))
        return bool(waiting)
    finally:
        engine.dispose()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)

"""Warm-pool slots in the store: a ready slot goes to exactly one create, with its address and password."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reddwarf.domain.instance import Instance, InstanceSpec
from reddwarf.domain.pool import PoolProfile, SlotState
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import InstanceStatus
from reddwarf.store import Database

PG15 = PoolProfile("postgresql", "15", "1", 1)


def add_ready(db: Database, profile: PoolProfile = PG15, count: int = 1) -> list[str]:
    ids = []
    with db.unit_of_work() as uow:
        for _ in range(count):
            slot_id = uow.pool.add(profile)
            assert uow.pool.mark(slot_id, SlotState.READY, only_from={SlotState.BUILDING})
            ids.append(slot_id)
    return ids


def test_claim_takes_the_oldest_ready_slot_of_the_profile_only(db: Database) -> None:
    other_flavor = PoolProfile("postgresql", "15", "2", 1)
    other_version = PoolProfile("postgresql", "18", "1", 1)
    add_ready(db, other_flavor)
    add_ready(db, other_version)
    with db.unit_of_work() as uow:
        building = uow.pool.add(PG15)
    first, second = add_ready(db, PG15, 2)
    with db.unit_of_work() as uow:
        assert uow.pool.claim(PG15) == first
        assert uow.pool.claim(PG15) == second
        assert uow.pool.claim(PG15) is None  # the building one is not claimable
    with db.unit_of_work(write=False) as uow:
        left = {(slot.profile, slot.state) for slot in uow.pool.list()}
        assert uow.pool.get(building) is not None
    assert left == {(other_flavor, SlotState.READY), (other_version, SlotState.READY), (PG15, SlotState.BUILDING)}


def test_a_retired_or_failed_slot_cannot_be_claimed_or_made_ready(db: Database) -> None:
    retired, failed = add_ready(db, PG15, 2)
    with db.unit_of_work() as uow:
        assert uow.pool.mark(retired, SlotState.RETIRING, only_from={SlotState.BUILDING, SlotState.READY})
        assert uow.pool.mark(failed, SlotState.FAILED, only_from={SlotState.READY}, error="initdb failed")
        # Once out of the live states, nothing brings a slot back.
        assert not uow.pool.mark(retired, SlotState.READY, only_from={SlotState.BUILDING})
        assert not uow.pool.mark(failed, SlotState.RETIRING, only_from={SlotState.BUILDING, SlotState.READY})
        assert uow.pool.claim(PG15) is None
    with db.unit_of_work(write=False) as uow:
        slot = uow.pool.get(failed)
    assert slot is not None and slot.state is SlotState.FAILED and slot.error == "initdb failed"


def test_take_hands_the_slot_its_address_and_admin_password_to_the_instance(db: Database) -> None:
    broken, (slot_id,) = add_ready(db), add_ready(db)
    spec = InstanceSpec(name="db1", flavor_id="1", volume_size_gb=1, datastore="postgresql", datastore_version="15")
    with db.unit_of_work() as uow:
        uow.addresses.claim(broken[0], "127.0.1.6", 5432)  # no admin password: never handed out
        uow.addresses.claim(slot_id, "127.0.1.7", 5432)
        uow.secrets.put(slot_id, "admin", Secret("slot-password"))
        uow.instances.add(Instance(id="i1", project_id="p1", spec=spec, status=InstanceStatus.BUILD))
        uow.secrets.put("i1", "admin", Secret("unused-password"))
    with db.unit_of_work() as uow:
        taken = uow.pool.take(PG15, "i1")
        assert taken is not None and (taken.slot_id, taken.address, taken.port) == (slot_id, "127.0.1.7", 5432)
        uow.instances.set_workload("i1", slot_id)
        assert uow.pool.take(PG15, "i2") is None
    with db.unit_of_work(write=False) as uow:
        instance = uow.instances.get("i1")
        assert instance is not None and instance.workload_id == slot_id and instance.runtime_id == slot_id
        assert uow.addresses.get("i1") == ("127.0.1.7", 5432)
        assert uow.addresses.get(slot_id) is None
        assert uow.secrets.get("i1", "admin") == Secret("slot-password")
        assert uow.secrets.get(slot_id, "admin") is None
        # The damaged slot was taken out of the ready ones and left as failed, for the keeper to destroy.
        (left,) = uow.pool.list()
        assert (left.id, left.state) == (broken[0], SlotState.FAILED) and "admin password" in left.error


def test_a_damaged_slot_leaves_a_late_claims_instance_as_it_was(db: Database) -> None:
    """The worker's late claim: the instance already has its own admin password; a ready slot without one
    (a damaged store) must not cost it that password, nor keep the slot's address."""
    (no_password,), (no_address,) = add_ready(db), add_ready(db)
    spec = InstanceSpec(name="db1", flavor_id="1", volume_size_gb=1, datastore="postgresql", datastore_version="15")
    with db.unit_of_work() as uow:
        uow.addresses.claim(no_password, "127.0.1.6", 5432)
        uow.secrets.put(no_address, "admin", Secret("slot-password"))
        uow.instances.add(Instance(id="i1", project_id="p1", spec=spec, status=InstanceStatus.BUILD))
        uow.secrets.put("i1", "admin", Secret("own-password"))
    with db.unit_of_work() as uow:
        assert uow.pool.take(PG15, "i1") is None
    with db.unit_of_work(write=False) as uow:
        assert uow.secrets.get("i1", "admin") == Secret("own-password")
        assert uow.addresses.get("i1") is None
        assert uow.addresses.get(no_password) == ("127.0.1.6", 5432)  # the keeper's destroy releases it
        assert uow.secrets.get(no_address, "admin") == Secret("slot-password")
        assert {(slot.id, slot.state) for slot in uow.pool.list()} == {
            (no_password, SlotState.FAILED), (no_address, SlotState.FAILED)
        }


def test_an_instance_made_cold_has_its_own_id_as_runtime_id(db: Database) -> None:
    spec = InstanceSpec(name="db1", flavor_id="1", volume_size_gb=1, datastore="redis", datastore_version="7.0")
    with db.unit_of_work() as uow:
        uow.instances.add(Instance(id="i2", project_id="p1", spec=spec, status=InstanceStatus.BUILD))
    with db.unit_of_work(write=False) as uow:
        instance = uow.instances.get("i2")
    assert instance is not None and instance.workload_id is None and instance.runtime_id == "i2"


def test_two_processes_racing_claim_each_slot_exactly_once(
    db: Database, store_url: str, key_file: Path, race: Callable[[str, str, Path], list[str]]
) -> None:
    expected = add_ready(db, PG15, 30)
    outputs = race("pool", store_url, key_file)
    per_process = [output.split() for output in outputs]
    every_claim = [slot_id for ids in per_process for slot_id in ids]
    assert sorted(every_claim) == sorted(expected)
    assert set(per_process[0]).isdisjoint(per_process[1])

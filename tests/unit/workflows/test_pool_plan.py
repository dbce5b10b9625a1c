"""The warm pool's plan: what the keeper builds, retires and clears to bring the slots to the target."""

from __future__ import annotations

from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.pool import PoolProfile, PoolSlot, PoolTarget, SlotState
from reddwarf.workflows.reconcilers.pool import plan

PG = PoolProfile("postgresql", "15", "1", 1)
REDIS = PoolProfile("redis", "7.0", "1", 1)
NOW = 10_000.0


def slot(
    slot_id: str, profile: PoolProfile, state: SlotState, *, created: float = 0.0, updated: float = 0.0
) -> PoolSlot:
    return PoolSlot(slot_id, profile, state, created=created, updated=updated)


def test_an_empty_pool_gets_every_missing_slot() -> None:
    todo = plan([], {PG: 2, REDIS: 1}, NOW, 60)
    assert sorted(todo.add, key=str) == sorted([PG, PG, REDIS], key=str)
    assert todo.retire == () and todo.clear == ()


def test_a_full_pool_needs_nothing() -> None:
    slots = [slot("a", PG, SlotState.READY), slot("b", PG, SlotState.BUILDING)]
    assert not plan(slots, {PG: 2}, NOW, 60)


def test_surplus_slots_are_retired_building_ones_first_then_the_newest_ready() -> None:
    slots = [
        slot("old-ready", PG, SlotState.READY, created=1),
        slot("new-ready", PG, SlotState.READY, created=3),
        slot("building", PG, SlotState.BUILDING, created=2),
    ]
    assert plan(slots, {PG: 2}, NOW, 60).retire == ("building",)
    assert plan(slots, {PG: 1}, NOW, 60).retire == ("building", "new-ready")
    assert set(plan(slots, {}, NOW, 60).retire) == {"old-ready", "new-ready", "building"}


def test_slots_of_a_profile_nobody_wants_are_retired_and_retiring_ones_are_left_alone() -> None:
    slots = [slot("r", REDIS, SlotState.READY), slot("going", PG, SlotState.RETIRING)]
    todo = plan(slots, {PG: 1}, NOW, 60)
    assert todo.retire == ("r",)
    assert todo.add == (PG,)  # a retiring slot does not count towards the target


def test_a_failed_build_pauses_its_profile_until_the_tombstone_is_cleared() -> None:
    failed = slot("f", PG, SlotState.FAILED, updated=NOW - 10)
    todo = plan([failed], {PG: 1, REDIS: 1}, NOW, 60)
    assert todo.add == (REDIS,) and todo.clear == ()
    later = plan([failed], {PG: 1, REDIS: 1}, NOW + 60, 60)
    assert later.clear == ("f",)
    assert later.add == (PG, REDIS)


def test_the_target_covers_only_creates_of_its_flavor_volume_and_datastores() -> None:
    def spec(datastore: str, version: str, flavor: str = "1", volume: int = 1) -> InstanceSpec:
        return InstanceSpec(name="x", flavor_id=flavor, volume_size_gb=volume, datastore=datastore,
                            datastore_version=version)

    target = PoolTarget(size=1, flavor_id="1", volume_gb=1, datastores=("postgresql:15", "redis"))
    assert target.covers(spec("postgresql", "15"))
    assert target.covers(spec("redis", "7.0"))
    assert not target.covers(spec("postgresql", "18"))
    assert not target.covers(spec("postgresql", "15", flavor="2"))
    assert not target.covers(spec("postgresql", "15", volume=2))
    assert not PoolTarget(size=0).covers(spec("postgresql", "15"))

"""Replication sets in the store: members with roles, changed only by compare-and-swap, and the claim's
set-wide conflicts (a replica's create and its primary's restart never run together)."""

from __future__ import annotations

import uuid

import pytest

from reddwarf.domain.operations import Kind
from reddwarf.domain.replication import ReplicaHealth, ReplicaState, Role
from reddwarf.store import Database
from reddwarf.store.repositories.replication import StaleSet


def _id() -> str:
    return str(uuid.uuid4())


def test_a_set_is_formed_grows_and_is_dissolved_when_its_last_replica_leaves(db: Database) -> None:
    primary, first, second, set_id = _id(), _id(), _id(), _id()
    with db.unit_of_work() as uow:
        formed = uow.replication.form(set_id, "p1", primary)
        grown = uow.replication.add_replicas(formed, [first, second])
    assert grown.primary_id == primary and grown.replica_ids == (first, second)
    assert grown.member(primary) is not None and grown.member(primary).role is Role.PRIMARY  # type: ignore[union-attr]
    assert grown.version == formed.version + 1
    with db.unit_of_work(write=False) as uow:
        assert uow.replication.set_of(first) == grown
        assert uow.replication.set_of(_id()) is None  # an instance in no set: the one-member case
        assert set(uow.replication.sets_of([primary, second, _id()])) == {primary, second}
    with db.unit_of_work() as uow:
        after = uow.replication.remove(grown, first)
    assert after is not None and after.replica_ids == (second,)
    with db.unit_of_work() as uow:
        assert uow.replication.remove(after, second) is None
    with db.unit_of_work(write=False) as uow:
        assert uow.replication.get(set_id) is None and uow.replication.set_of(primary) is None


def test_a_set_of_one_outlives_its_last_replica_until_its_primary_dissolves_it(db: Database) -> None:
    """A set whose writer endpoint is not its primary's own address keeps it (and itself) without replicas."""
    primary, replica, set_id = _id(), _id(), _id()
    with db.unit_of_work() as uow:
        grown = uow.replication.add_replicas(uow.replication.form(set_id, "p1", primary), [replica])
    with db.unit_of_work() as uow:
        alone = uow.replication.remove(grown, replica, keep_alone=True)
    assert alone is not None and alone.replica_ids == () and alone.primary_id == primary
    with pytest.raises(ValueError), db.unit_of_work() as uow:
        uow.replication.dissolve(grown)  # as read before the replica left: not a set of one
    with db.unit_of_work() as uow:
        uow.replication.dissolve(alone)
    with db.unit_of_work(write=False) as uow:
        assert uow.replication.get(set_id) is None and uow.replication.set_of(primary) is None


def test_two_writers_of_the_same_version_cannot_both_change_a_set(db: Database) -> None:
    primary = _id()
    with db.unit_of_work() as uow:
        formed = uow.replication.form(_id(), "p1", primary)
    replica = _id()
    with db.unit_of_work() as uow:
        uow.replication.add_replicas(formed, [replica])
    with pytest.raises(StaleSet), db.unit_of_work() as uow:
        uow.replication.add_replicas(formed, [_id()])  # read version 1; the set is at 2 now
    with db.unit_of_work(write=False) as uow:
        current = uow.replication.set_of(primary)
    assert current is not None and current.replica_ids == (replica,)  # the stale write left nothing
    with pytest.raises(StaleSet), db.unit_of_work() as uow:
        uow.replication.form(_id(), "p1", primary)  # a member of one set cannot form another


def test_a_promotion_swaps_two_roles_once_and_a_second_promotion_of_the_same_version_loses(db: Database) -> None:
    primary, first, second, set_id = _id(), _id(), _id(), _id()
    with db.unit_of_work() as uow:
        grown = uow.replication.add_replicas(uow.replication.form(set_id, "p1", primary), [first, second])
        uow.replication.record_health(first, ReplicaHealth(ReplicaState(True, 0, 0.0), 5.0))
    with db.unit_of_work() as uow:
        promoted = uow.replication.promote(grown, first)
    assert promoted.id == set_id and promoted.primary_id == first and promoted.version == grown.version + 1
    assert promoted.replica_ids == (primary, second)  # the old primary follows, and so does the other replica
    assert promoted.member(first).health is None  # type: ignore[union-attr]  # a primary has no lag
    with pytest.raises(StaleSet), db.unit_of_work() as uow:
        uow.replication.promote(grown, second)  # read before the first promotion: refused, nothing written
    with db.unit_of_work(write=False) as uow:
        assert uow.replication.get(set_id) == promoted
    with pytest.raises(ValueError), db.unit_of_work() as uow:
        uow.replication.promote(promoted, first)  # the primary already


def _enqueue(db: Database, kind: Kind, resource_id: str) -> str:
    with db.unit_of_work() as uow:
        return uow.operations.enqueue(kind, resource_id, {})


def _claim(db: Database, worker: str) -> str | None:
    with db.unit_of_work() as uow:
        op = uow.operations.claim(worker, lease_ttl=30)
        return None if op is None else op.id


def test_a_replicas_create_and_its_primarys_restart_run_one_after_the_other(db: Database) -> None:
    primary, replica, other = _id(), _id(), _id()
    restart = _enqueue(db, Kind.INSTANCE_RESTART, primary)
    with db.unit_of_work() as uow:
        formed = uow.replication.form(_id(), "p1", primary)
        uow.replication.add_replicas(formed, [replica])
    create = _enqueue(db, Kind.REPLICA_CREATE, replica)
    backup = _enqueue(db, Kind.BACKUP_CREATE, primary)
    later_restart = _enqueue(db, Kind.INSTANCE_RESTART, primary)
    unrelated = _enqueue(db, Kind.INSTANCE_RESTART, other)

    assert _claim(db, "w1") == restart
    # The create waits for the restart accepted before it on another member of its set (the backup, for the
    # restart on its own instance); another instance is not held up.
    assert _claim(db, "w2") == unrelated
    assert _claim(db, "w3") is None
    with db.unit_of_work() as uow:
        assert uow.operations.complete(restart, "w1")
    # A backup of the primary does not conflict with its replica's create: both run.
    held = {_claim(db, "w3"): "w3", _claim(db, "w4"): "w4"}
    assert set(held) == {create, backup}
    with db.unit_of_work() as uow:
        assert uow.operations.complete(backup, held[backup])
    assert _claim(db, "w5") is None  # the second restart waits for the replica's create
    with db.unit_of_work() as uow:
        assert uow.operations.complete(create, held[create])
    assert _claim(db, "w5") == later_restart


def test_a_primarys_converge_and_a_new_replicas_create_run_in_the_order_they_were_accepted(db: Database) -> None:
    primary, replica = _id(), _id()
    converge = _enqueue(db, Kind.SET_CONVERGE, primary)  # a replica left; the set was dissolved
    with db.unit_of_work() as uow:  # a new replica asked for at once: a new set
        formed = uow.replication.form(_id(), "p1", primary)
        uow.replication.add_replicas(formed, [replica])
    create = _enqueue(db, Kind.REPLICA_CREATE, replica)
    backup = _enqueue(db, Kind.BACKUP_CREATE, primary)
    assert _claim(db, "w1") == converge
    assert _claim(db, "w2") == backup  # a backup of the primary is not held up by its converge
    assert _claim(db, "w3") is None  # the create waits: the converge must not undo what it makes ready
    with db.unit_of_work() as uow:
        assert uow.operations.complete(converge, "w1")
    assert _claim(db, "w3") == create


def test_an_ejects_children_run_under_its_scope_and_what_came_after_it_waits_for_them(db: Database) -> None:
    source, replica, other = _id(), _id(), _id()
    with db.unit_of_work() as uow:
        uow.replication.add_replicas(uow.replication.form(_id(), "p1", source), [replica, other])
    eject = _enqueue(db, Kind.REPLICA_EJECT, source)
    assert _claim(db, "w1") == eject
    later_restart = _enqueue(db, Kind.INSTANCE_RESTART, other)  # accepted while the eject runs
    with db.unit_of_work() as uow:
        parent = uow.operations.get(eject)
        assert parent is not None
        child = uow.operations.enqueue_child(parent, Kind.REPLICA_REPOINT, other)
        assert [c.id for c in uow.operations.children(eject)] == [child]
        assert uow.operations.get(child).parent_id == eject  # type: ignore[union-attr]
    # The child is not held up by its running parent (whose set-wide lifecycle lane would hold any other
    # operation on a member), and the restart accepted after the parent waits for the child.
    assert _claim(db, "w2") == child
    assert _claim(db, "w3") is None
    with db.unit_of_work() as uow:
        assert uow.operations.complete(child, "w2")
    assert _claim(db, "w3") is None  # ... and for the parent itself
    with db.unit_of_work() as uow:
        assert uow.operations.complete(eject, "w1")
    assert _claim(db, "w3") == later_restart


def test_a_child_never_starts_beside_a_conflicting_operation_that_already_runs(db: Database) -> None:
    """A child counts as accepted with its parent, so it goes before what was accepted after the parent;
    but one of those that already holds the resource runs on: the child waits for it rather than start
    beside it (the kernel's rule: one conflicting operation at a time, whatever the order)."""
    source, replica, elsewhere = _id(), _id(), _id()
    with db.unit_of_work() as uow:
        uow.replication.add_replicas(uow.replication.form(_id(), "p1", source), [replica])
    eject = _enqueue(db, Kind.REPLICA_EJECT, source)
    assert _claim(db, "w1") == eject
    restart = _enqueue(db, Kind.INSTANCE_RESTART, elsewhere)  # outside the set: nothing holds it up
    assert _claim(db, "w2") == restart
    with db.unit_of_work() as uow:
        parent = uow.operations.get(eject)
        assert parent is not None
        child = uow.operations.enqueue_child(parent, Kind.REPLICA_REPOINT, elsewhere)
    assert _claim(db, "w3") is None  # older by its parent, but the restart runs
    with db.unit_of_work() as uow:
        assert uow.operations.complete(restart, "w2")
    assert _claim(db, "w3") == child

"""The failover watch's decisions (`reconcilers.failover_watch`) on a real SQLite store, with a runtime and an
engine whose answers the test sets: a primary is failed over only after failing every look for the grace,
exactly once, never during a planned operation, never twice within the quiet interval, never with no replica
to take its place, and never for a set that does not fail over by itself."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.fakes.clock import FakeClock
from tests.fakes.engines import FakeEngine
from tests.fakes.runtime import FakeRuntime

from reddwarf.domain.conditions import Observation
from reddwarf.domain.instance import Endpoint, Instance, InstanceSpec
from reddwarf.domain.operations import EjectPayload, Kind, payload_of
from reddwarf.domain.replication import (
    Durability,
    Mode,
    ReplicaHealth,
    ReplicaState,
    SetPolicy,
    SyncState,
    slot_name,
)
from reddwarf.domain.status import InstanceStatus
from reddwarf.domain.workload import Placement, ProcessObservation
from reddwarf.store.database import Database
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.endpoints import keep_writer_address, release_reader, writer_holder
from reddwarf.workflows.reconcilers.failover_watch import FailoverPolicy, FailoverWatch

GRACE = 2.0
GIB = 1024**3


class Engine(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.answers = True

    def ping(self, placement: Placement, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
        return self.answers


class Runtime(FakeRuntime):
    def __init__(self) -> None:
        super().__init__()
        self.observation = ProcessObservation(running=True, pid=1)
        # Bytes used of a 1 GiB volume, by the instance's address (none: not known).
        self.used: dict[str, int] = {}

    def observe(self, placement: Placement) -> ProcessObservation:
        used = self.used.get(placement.address)
        if used is None:
            return self.observation
        return dataclasses.replace(self.observation, volume_used_bytes=used, volume_size_bytes=GIB)


@dataclass
class Plane:
    db: Database
    engine: Engine
    runtime: Runtime
    clock: FakeClock
    watch: FailoverWatch
    primary: str
    replica: str
    set_id: str

    def look(self) -> None:
        """One round of the watch, as the observer runs it."""
        for _, watched in self.watch.watched():
            follow_up = self.watch.first_look(watched)
            if follow_up is not None:
                follow_up()

    def ejects(self) -> list[EjectPayload]:
        with self.db.unit_of_work(write=False) as uow:
            ops = uow.operations.active_for(self.primary)
        return [payload_of(op.kind, op.payload, EjectPayload) for op in ops if op.kind == Kind.REPLICA_EJECT]

    def events(self) -> list[str]:
        with self.db.unit_of_work(write=False) as uow:
            return [e.message for e in uow.events.list(self.primary)]


def _instance(name: str, address: str) -> Instance:
    spec = InstanceSpec(name=name, flavor_id="1", volume_size_gb=1, datastore="postgresql", datastore_version="15")
    return Instance(id=str(uuid.uuid4()), project_id="p1", spec=spec, status=InstanceStatus.BUILD,
                    endpoint=Endpoint(address, 5432))


@pytest.fixture
def plane(db: Database) -> Iterator[Plane]:
    engine, runtime, clock = Engine(), Runtime(), FakeClock(now=1000.0)
    deps = ReconcilerDeps(db=db, engines={"postgresql": engine}, runtime=runtime, flavors={})
    primary, replica = _instance("p", "127.0.1.10"), _instance("r", "127.0.1.11")
    with db.unit_of_work() as uow:
        for instance in (primary, replica):
            uow.instances.add(instance)
            uow.instances.set_endpoint(instance.id, instance.endpoint)
            uow.instances.record(instance.id, Observation.READY, "ready", generation=instance.generation)
        formed = uow.replication.form(primary.id, "p1", primary.id, ("127.0.1.10", 5432))
        uow.replication.add_replicas(formed, [replica.id])
        uow.replication.record_health(replica.id, ReplicaHealth(ReplicaState(streaming=True), time.time()))
    watch = FailoverWatch(deps, FailoverPolicy(grace=GRACE, ping_timeout=0.5, quiet=300.0), clock=clock)
    yield Plane(db, engine, runtime, clock, watch, primary.id, replica.id, primary.id)


def test_a_primary_is_failed_over_once_after_failing_every_look_for_the_grace(plane: Plane) -> None:
    plane.engine.answers = False
    plane.look()
    plane.clock.now += GRACE / 2
    plane.look()
    assert plane.ejects() == []  # within the grace
    plane.engine.answers = True  # the control plane lost sight of it for a moment: the clock starts again
    plane.look()
    plane.engine.answers = False
    plane.clock.now += GRACE / 2 + 0.1
    plane.look()
    assert plane.ejects() == []
    plane.clock.now += GRACE
    plane.look()
    (eject,) = plane.ejects()
    assert eject.automatic and "does not answer" in eject.reason
    plane.clock.now += 1
    plane.look()  # the eject under way: nothing more
    assert len(plane.ejects()) == 1
    with plane.db.unit_of_work(write=False) as uow:
        found = uow.replication.get(plane.set_id)
        statuses = {uow.instances.get(i).status for i in (plane.primary, plane.replica)}  # type: ignore[union-attr]
    assert found is not None and found.failed_over is not None and statuses == {InstanceStatus.EJECT}
    assert any("automatic failover" in m for m in plane.events())


@pytest.mark.parametrize("fault", ["dead", "stopped"])
def test_a_dead_or_stopped_server_counts_as_failing_without_a_ping(plane: Plane, fault: str) -> None:
    plane.runtime.observation = (ProcessObservation(running=False, exit_reason="killed by signal 9")
                                 if fault == "dead" else ProcessObservation(running=True, stopped=True, pid=1))
    plane.look()
    plane.clock.now += GRACE
    plane.look()
    (eject,) = plane.ejects()
    assert ("not running" if fault == "dead" else "stopped by a signal") in eject.reason


def test_a_planned_restart_is_never_failed_over(plane: Plane) -> None:
    with plane.db.unit_of_work() as uow:
        uow.operations.enqueue(Kind.INSTANCE_RESTART, plane.primary)
    plane.runtime.observation = ProcessObservation(running=False, exit_reason="stopped for a restart")
    for _ in range(5):
        plane.look()
        plane.clock.now += GRACE
    assert plane.ejects() == []


def test_no_second_failover_within_the_quiet_interval_and_none_without_a_replica(plane: Plane) -> None:
    with plane.db.unit_of_work() as uow:
        uow.replication.failed_over(plane.set_id, time.time() - 10)
    plane.engine.answers = False
    plane.look()
    plane.clock.now += GRACE
    plane.look()
    assert plane.ejects() == []
    assert any("failed over by itself" in m for m in plane.events())
    with plane.db.unit_of_work() as uow:
        uow.replication.failed_over(plane.set_id, time.time() - 3600)
        replica = uow.instances.get(plane.replica)
        assert replica is not None
        uow.instances.record(plane.replica, Observation.FAILED, "broken", generation=replica.generation)
    plane.clock.now += GRACE
    plane.look()
    assert plane.ejects() == []
    assert any("none of its replicas is ACTIVE" in m for m in plane.events())


@pytest.mark.parametrize(("seen_before_failure", "failed_over"), [(True, False), (False, True)])
def test_a_replica_seen_not_streaming_before_the_primary_failed_never_takes_its_place(
    plane: Plane, seen_before_failure: bool, failed_over: bool
) -> None:
    # Seen stopped a minute before the primary failed: promoting it would lose a minute of acknowledged writes.
    # Seen stopped only once the primary was failing (the replication watch asks the primary): that is the
    # failure itself.
    seen = time.time() - (60 if seen_before_failure else 0)
    with plane.db.unit_of_work() as uow:
        uow.replication.record_health(plane.replica, ReplicaHealth(ReplicaState(streaming=False), seen))
    plane.engine.answers = False
    plane.look()
    plane.clock.now += GRACE
    plane.look()
    assert bool(plane.ejects()) is failed_over
    if not failed_over:
        assert any("was streaming when it began to fail" in m for m in plane.events())


def test_a_set_that_does_not_fail_over_by_itself_is_not_watched(plane: Plane) -> None:
    with plane.db.unit_of_work() as uow:
        uow.replication.set_policy(plane.set_id, SetPolicy(auto_failover=False))
    plane.engine.answers = False
    for _ in range(3):
        plane.look()
        plane.clock.now += GRACE
    assert plane.ejects() == []
    assert plane.watch.watched() == []


def test_a_primary_whose_volume_is_full_is_never_failed_over_onto_a_replica_as_full(plane: Plane) -> None:
    plane.engine.answers = False
    plane.runtime.used = {"127.0.1.10": GIB - 1024 * 1024, "127.0.1.11": GIB - 4 * 1024 * 1024}
    for _ in range(3):
        plane.look()
        plane.clock.now += GRACE
    assert plane.ejects() == []
    assert any("volume is full" in message and "move the outage" in message for message in plane.events())
    plane.runtime.used["127.0.1.11"] = GIB // 2  # the replica has room: it takes over
    plane.look()
    plane.clock.now += GRACE
    plane.look()
    assert len(plane.ejects()) == 1


@pytest.mark.parametrize("durability", [Durability.STRICT, Durability.AVAILABLE])
def test_a_synchronous_set_fails_over_by_itself_only_while_a_replica_is_known_synchronous(
    plane: Plane, durability: Durability
) -> None:
    with plane.db.unit_of_work() as uow:
        uow.replication.set_policy(plane.set_id, SetPolicy(mode=Mode.SYNC, durability=durability), mode_changed=True)
    plane.engine.answers = False
    for _ in range(3):  # asynchronous since it became synchronous: no replica is known to hold every commit
        plane.look()
        plane.clock.now += GRACE
    assert plane.ejects() == []
    assert any("synchronous mode" in message and "acknowledged" in message for message in plane.events())
    with plane.db.unit_of_work() as uow:
        before = uow.replication.get(plane.set_id)
        assert before is not None and uow.replication.set_sync(before, SyncState.RESYNCING, time.time())
    plane.look()
    plane.clock.now += GRACE
    assert plane.ejects() == []  # resyncing: not yet
    with plane.db.unit_of_work() as uow:
        assert not uow.replication.set_sync(before, SyncState.SYNC, time.time())  # as read before: stale
        now = uow.replication.get(plane.set_id)
        assert now is not None and uow.replication.set_sync(now, SyncState.SYNC, time.time())
    plane.look()
    plane.clock.now += GRACE
    plane.look()
    (eject,) = plane.ejects()
    assert eject.automatic
    with plane.db.unit_of_work() as uow:  # the promotion the eject records: strict waits for the new replicas
        found = uow.replication.get(plane.set_id)
        assert found is not None
        promoted = uow.replication.promote(found, plane.replica)
    assert promoted.sync is (SyncState.RESYNCING if durability is Durability.STRICT else SyncState.ASYNC)
    assert promoted.synchronous_names == (() if durability is Durability.AVAILABLE else (slot_name(plane.primary),))


def test_the_writer_endpoints_address_outlives_its_founder_until_the_set_is_gone(plane: Plane) -> None:
    with plane.db.unit_of_work() as uow:
        assert uow.addresses.claim(plane.primary, "127.0.1.10", 5432)
        keep_writer_address(uow, plane.primary)  # the founder is deleted while its set lives on
        uow.addresses.release(plane.primary)
    with plane.db.unit_of_work() as uow:
        assert uow.addresses.get(writer_holder(plane.set_id)) == ("127.0.1.10", 5432)
        assert not uow.addresses.claim(str(uuid.uuid4()), "127.0.1.10", 5432)  # never given to another instance
        release_reader(uow, plane.set_id)  # the set dissolved
    with plane.db.unit_of_work(write=False) as uow:
        assert uow.addresses.get(writer_holder(plane.set_id)) is None

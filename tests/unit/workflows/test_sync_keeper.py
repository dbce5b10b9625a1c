"""The synchronous mode's state machine (`reconcilers.sync_keeper`) on a real SQLite store, with the primary's
readings set by the test: a set becomes synchronous only once a replica that acknowledges has flushed past where
its primary was when commits began to wait; an AVAILABLE set drops to asynchronous (recorded before its server
stops waiting) once no replica has acknowledged for the fallback time; a STRICT one never drops, and its
primary says why its commits wait; a server found out of line with the store is loaded again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from tests.fakes.clock import FakeClock
from tests.fakes.engines import FakeEngine
from tests.fakes.runtime import FakeRuntime

from reddwarf.domain.conditions import Observation
from reddwarf.domain.instance import Endpoint, Instance, InstanceSpec
from reddwarf.domain.replication import Durability, Mode, ReplicationSet, SetPolicy, SyncReading, SyncState
from reddwarf.domain.status import ConditionType, InstanceStatus
from reddwarf.store.database import Database
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.sync_keeper import SyncKeeper, SyncPolicy

FALLBACK = 2.0


@dataclass
class Plane:
    db: Database
    clock: FakeClock
    keeper: SyncKeeper
    primary: Instance
    set_id: str
    reading: SyncReading = field(default_factory=lambda: SyncReading(waits=False, position=100, streaming=1))
    # What the server's configuration says as the keeper loads it: each `apply` records the set's state then.
    applied: list[SyncState] = field(default_factory=list)

    def found(self) -> ReplicationSet:
        with self.db.unit_of_work(write=False) as uow:
            found = uow.replication.get(self.set_id)
        assert found is not None
        return found

    def check(self, after: float = 1.0) -> SyncState:
        self.clock.now += after
        with self.db.unit_of_work(write=False) as uow:
            primary = uow.instances.get(self.primary.id)
        assert primary is not None
        self.keeper.keep(self.found(), primary)
        return self.found().sync

    def server_follows_store(self) -> None:
        """The primary's server as the store says (what `apply` does for real)."""
        self.reading = SyncReading(waits=bool(self.found().synchronous_names), position=self.reading.position,
                                   streaming=self.reading.streaming, synced=self.reading.synced,
                                   caught_up=self.reading.caught_up)

    def degraded(self) -> str | None:
        with self.db.unit_of_work(write=False) as uow:
            primary = uow.instances.get(self.primary.id)
        assert primary is not None
        found = {c.type: c for c in primary.conditions}.get(ConditionType.DEGRADED)
        return found.reason if found is not None and found.status else None


def _instance(name: str, address: str) -> Instance:
    spec = InstanceSpec(name=name, flavor_id="1", volume_size_gb=1, datastore="postgresql", datastore_version="15")
    return Instance(id=str(uuid.uuid4()), project_id="p1", spec=spec, status=InstanceStatus.BUILD,
                    endpoint=Endpoint(address, 5432))


def _plane(db: Database, durability: Durability) -> Plane:
    clock = FakeClock(now=1000.0)
    deps = ReconcilerDeps(db=db, engines={"postgresql": FakeEngine()}, runtime=FakeRuntime(), flavors={})
    primary, replica = _instance("p", "127.0.1.10"), _instance("r", "127.0.1.11")
    with db.unit_of_work() as uow:
        for instance in (primary, replica):
            uow.instances.add(instance)
            uow.instances.set_endpoint(instance.id, instance.endpoint)
            uow.instances.record(instance.id, Observation.READY, "ready", generation=instance.generation)
        formed = uow.replication.form(primary.id, "p1", primary.id, ("127.0.1.10", 5432),
                                      SetPolicy(mode=Mode.SYNC, durability=durability))
        uow.replication.add_replicas(formed, [replica.id])
    holder: list[Plane] = []

    def apply(set_id: str) -> None:
        holder[0].applied.append(holder[0].found().sync)
        holder[0].server_follows_store()

    keeper = SyncKeeper(deps, SyncPolicy(check_every=0.5, fallback_after=FALLBACK), clock,
                        read=lambda found, primary: holder[0].reading, apply=apply)
    plane = Plane(db, clock, keeper, primary, primary.id)
    holder.append(plane)
    return plane


@pytest.fixture(params=[Durability.STRICT, Durability.AVAILABLE])
def plane(request: pytest.FixtureRequest, db: Database) -> Iterator[Plane]:
    yield _plane(db, request.param)


def _move(db: Database, set_id: str, state: SyncState) -> None:
    with db.unit_of_work() as uow:
        found = uow.replication.get(set_id)
        assert found is not None and uow.replication.set_sync(found, state, time.time())


def _acknowledging(plane: Plane, synced: int) -> None:
    plane.reading = SyncReading(waits=plane.reading.waits, position=plane.reading.position, streaming=1,
                                synced=synced, caught_up=True)


def test_a_set_is_synchronous_only_once_a_replica_flushed_past_where_commits_began_to_wait(plane: Plane) -> None:
    plane.reading = SyncReading(waits=False, position=100, streaming=0, caught_up=False)
    assert plane.check() is SyncState.ASYNC  # no replica streams, or none is close behind: nothing to wait for
    plane.reading = SyncReading(waits=False, position=100, streaming=1, caught_up=True)
    assert plane.check() is SyncState.RESYNCING
    assert plane.applied == [SyncState.RESYNCING] and plane.reading.waits  # recorded, then the server loaded
    plane.reading = SyncReading(waits=True, position=500, streaming=1, synced=400, caught_up=True)
    assert plane.check() is SyncState.RESYNCING  # the mark: 500, where the log was once commits waited
    _acknowledging(plane, 499)
    assert plane.check() is SyncState.RESYNCING
    _acknowledging(plane, 500)
    assert plane.check() is SyncState.SYNC
    assert plane.check(after=0.1) is SyncState.SYNC  # checked at most every `check_every`


def test_an_available_set_drops_to_asynchronous_recorded_before_its_server_stops_waiting(db: Database) -> None:
    plane = _plane(db, Durability.AVAILABLE)
    _move(db, plane.set_id, SyncState.SYNC)
    plane.reading = SyncReading(waits=True, position=900, streaming=1, synced=800, caught_up=True)
    assert plane.check() is SyncState.SYNC  # the replica's flush is behind and has not moved: the clock starts
    assert plane.check(after=FALLBACK - 0.5) is SyncState.SYNC
    assert plane.check(after=0.6) is SyncState.ASYNC  # stalled for the fallback: dropped
    assert plane.applied == [SyncState.ASYNC] and not plane.reading.waits  # the store said so before the server
    assert plane.degraded() is None
    with db.unit_of_work(write=False) as uow:
        assert any("no longer wait" in e.message for e in uow.events.list(plane.primary.id))


def test_a_strict_set_never_drops_and_its_primary_says_why_its_commits_wait(db: Database) -> None:
    plane = _plane(db, Durability.STRICT)
    _move(db, plane.set_id, SyncState.SYNC)
    plane.reading = SyncReading(waits=True, position=900, streaming=0)
    for _ in range(5):
        assert plane.check() is SyncState.SYNC
    assert plane.applied == [] and plane.degraded() == "CommitsWaitForReplica"
    _acknowledging(plane, 850)
    plane.check()
    _acknowledging(plane, 900)
    assert plane.check() is SyncState.SYNC
    assert plane.degraded() is None  # a replica acknowledges again


def test_a_replica_that_keeps_acknowledging_under_load_is_never_taken_for_a_stalled_one(plane: Plane) -> None:
    _move(plane.db, plane.set_id, SyncState.SYNC)
    for step in range(10):  # always behind the log (a steady load), but moving
        plane.reading = SyncReading(waits=True, position=1000 + 100 * step, streaming=1, synced=950 + 100 * step)
        assert plane.check() is SyncState.SYNC
    assert plane.degraded() is None and plane.applied == []


def test_a_server_out_of_line_with_the_store_is_loaded_again(plane: Plane) -> None:
    _move(plane.db, plane.set_id, SyncState.SYNC)
    plane.reading = SyncReading(waits=False, position=100, streaming=1, synced=None)  # a reload that was lost
    plane.check()
    assert plane.applied == [SyncState.SYNC] and plane.reading.waits


def test_a_mark_read_before_the_set_moved_means_nothing_after(plane: Plane) -> None:
    _move(plane.db, plane.set_id, SyncState.RESYNCING)
    plane.server_follows_store()
    plane.reading = SyncReading(waits=True, position=500, streaming=1, synced=100, caught_up=True)
    plane.check()
    plane.check()  # the mark: 500
    _move(plane.db, plane.set_id, SyncState.RESYNCING)  # a promotion (or anyone) moved it meanwhile
    plane.reading = SyncReading(waits=True, position=900, streaming=1, synced=600, caught_up=True)
    assert plane.check() is SyncState.RESYNCING  # 600 is past the old mark, not past where the new wait began
    assert plane.check() is SyncState.RESYNCING  # the new mark: 900
    _acknowledging(plane, 900)
    assert plane.check() is SyncState.SYNC

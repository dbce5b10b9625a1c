"""Replication sets and their members (`reddwarf.domain.replication`), changed only by compare-and-swap.

Every change of a set names the version it read: `UPDATE replication_sets SET version = version + 1 ...
WHERE id = :id AND version = :read` matches only while nobody changed the set since, so of two writers that
read the same version exactly one succeeds and the other gets `StaleSet` (its transaction rolls back with
whatever else it wrote, and it reads again).
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reddwarf.domain.replication import (
    Address,
    Durability,
    Member,
    Mode,
    ReplicaHealth,
    ReplicaState,
    ReplicationSet,
    Role,
    SetPolicy,
    SyncState,
)
from reddwarf.store.clock import now
from reddwarf.store.rows import rowcount
from reddwarf.store.tables import ReplicationSetRow, SetMemberRow


def health_of(row: SetMemberRow) -> ReplicaHealth | None:
    if row.observed is None or row.streaming is None:
        return None
    state = ReplicaState(streaming=row.streaming, lag_bytes=row.lag_bytes, lag_seconds=row.lag_seconds,
                         detail=row.health_detail or "")
    return ReplicaHealth(state=state, observed=row.observed)


def _address(address: str | None, port: int | None) -> Address | None:
    return None if address is None or port is None else (address, port)


class StaleSet(Exception):
    """The set changed since it was read (or is gone): read it again and decide again."""


class ReplicationRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, set_id: str) -> ReplicationSet | None:
        row = self._session.get(ReplicationSetRow, set_id, populate_existing=True)
        if row is None:
            return None
        members = self._session.scalars(
            select(SetMemberRow).where(SetMemberRow.set_id == set_id)
            .order_by(SetMemberRow.created, SetMemberRow.instance_id)
            .execution_options(populate_existing=True)
        )
        return ReplicationSet(
            id=row.id, project_id=row.project_id, primary_id=row.primary_id,
            members=tuple(Member(m.instance_id, Role(m.role), m.created, health_of(m), m.fenced) for m in members),
            version=row.version, created=row.created, updated=row.updated,
            policy=SetPolicy(mode=Mode(row.mode), auto_failover=row.auto_failover,
                             durability=Durability(row.durability)),
            writer=_address(row.writer_address, row.writer_port),
            reader=_address(row.reader_address, row.reader_port), failed_over=row.failed_over,
            writer_held=row.writer_held, sync=SyncState(row.sync_state), sync_changed=row.sync_changed,
        )

    def all_sets(self) -> list[ReplicationSet]:
        """Every recorded set (the replication watch's round)."""
        ids = self._session.scalars(select(ReplicationSetRow.id).order_by(ReplicationSetRow.created))
        return [found for found in (self.get(set_id) for set_id in list(ids)) if found is not None]

    def record_health(self, instance_id: str, health: ReplicaHealth) -> None:
        """What the replication watch observed of a replica (an observation, not a change of roles: no
        compare-and-swap on the set)."""
        state = health.state
        self._session.execute(
            update(SetMemberRow).where(SetMemberRow.instance_id == instance_id)
            .values(streaming=state.streaming, lag_bytes=state.lag_bytes, lag_seconds=state.lag_seconds,
                    health_detail=state.detail, observed=health.observed)
            .execution_options(synchronize_session=False)
        )

    def set_of(self, instance_id: str) -> ReplicationSet | None:
        """The set `instance_id` is a member of, or None (the one-member case)."""
        set_id = self._session.scalar(select(SetMemberRow.set_id).where(SetMemberRow.instance_id == instance_id))
        return None if set_id is None else self.get(set_id)

    def sets_of(self, instance_ids: list[str]) -> dict[str, ReplicationSet]:
        """The set of each of `instance_ids` that is a member of one (one query per set, for list views)."""
        if not instance_ids:
            return {}
        pairs = self._session.execute(
            select(SetMemberRow.instance_id, SetMemberRow.set_id).where(SetMemberRow.instance_id.in_(instance_ids))
        ).all()
        sets: dict[str, ReplicationSet] = {}
        found: dict[str, ReplicationSet] = {}
        for instance_id, set_id in pairs:
            if set_id not in sets:
                loaded = self.get(set_id)
                if loaded is None:
                    continue
                sets[set_id] = loaded
            found[instance_id] = sets[set_id]
        return found

    def form(
        self, set_id: str, project_id: str, primary_id: str, writer: Address | None = None,
        policy: SetPolicy | None = None,
    ) -> ReplicationSet:
        """Record a new set whose only member is `primary_id` (version 1), its writer endpoint `writer` (the
        primary's own address). `StaleSet` when the primary is a member of a set already (another request
        formed one first)."""
        policy = policy or SetPolicy()
        if self._session.get(SetMemberRow, primary_id, populate_existing=True) is not None:
            raise StaleSet(f"instance {primary_id} is a member of a set already")
        moment = now()
        try:
            with self._session.begin_nested():  # another request may form the same set at the same moment
                self._session.add(ReplicationSetRow(
                    id=set_id, project_id=project_id, primary_id=primary_id, version=1, created=moment,
                    updated=moment, mode=policy.mode.value, auto_failover=policy.auto_failover,
                    durability=policy.durability.value,
                    writer_address=None if writer is None else writer[0],
                    writer_port=None if writer is None else writer[1]))
                self._session.flush()
                self._session.add(SetMemberRow(instance_id=primary_id, set_id=set_id, role=Role.PRIMARY.value,
                                               created=moment))
                self._session.flush()
        except IntegrityError:
            raise StaleSet(f"instance {primary_id} became a member of a set meanwhile") from None
        found = self.get(set_id)
        assert found is not None
        return found

    def add_replicas(self, found: ReplicationSet, instance_ids: list[str]) -> ReplicationSet:
        """Add `instance_ids` as replicas of `found` (as read: `StaleSet` if it changed since)."""
        self._bump(found, found.primary_id)
        moment = now()
        for index, instance_id in enumerate(instance_ids):
            # Distinct creation times keep the replicas in the order they were asked for.
            self._session.add(SetMemberRow(instance_id=instance_id, set_id=found.id, role=Role.REPLICA.value,
                                           created=moment + index * 1e-6))
        self._session.flush()
        return self._reread(found.id)

    def remove(self, found: ReplicationSet, instance_id: str, keep_alone: bool = False) -> ReplicationSet | None:
        """Take a replica out of `found` (as read); the set is dissolved (None) when only its primary is left,
        unless `keep_alone` (a set of one: its writer endpoint is not its primary's own address). The primary
        itself never leaves this way (it is promoted away first)."""
        if instance_id == found.primary_id:
            raise ValueError(f"instance {instance_id} is the primary of set {found.id}")
        self._bump(found, found.primary_id)
        self._session.execute(
            delete(SetMemberRow).where(SetMemberRow.instance_id == instance_id, SetMemberRow.set_id == found.id)
            .execution_options(synchronize_session=False)
        )
        if len(found.members) <= 2:
            if not keep_alone:
                self._drop(found.id)
                return None
            # A set of one: nothing to wait for, and a replica added later proves itself first.
            self._session.execute(
                update(ReplicationSetRow).where(ReplicationSetRow.id == found.id)
                .values(sync_state=SyncState.ASYNC.value, sync_changed=now())
                .execution_options(synchronize_session=False)
            )
        return self._reread(found.id)

    def dissolve(self, found: ReplicationSet) -> None:
        """Dissolve a set of one (as read: `StaleSet` if it changed since) as its primary is deleted."""
        if len(found.members) != 1:
            raise ValueError(f"replication set {found.id} still has replicas")
        self._bump(found, found.primary_id)
        self._drop(found.id)

    def _drop(self, set_id: str) -> None:
        self._session.execute(
            delete(SetMemberRow).where(SetMemberRow.set_id == set_id).execution_options(synchronize_session=False)
        )
        self._session.execute(
            delete(ReplicationSetRow).where(ReplicationSetRow.id == set_id).execution_options(synchronize_session=False)
        )

    def promote(self, found: ReplicationSet, instance_id: str) -> ReplicationSet:
        """Make the replica `instance_id` the primary of `found` (as read) and its primary a replica; the other
        replicas now follow it. Its health record is dropped (a primary has none); the former primary's starts
        empty."""
        member = found.member(instance_id)
        if member is None or member.role is not Role.REPLICA:
            raise ValueError(f"instance {instance_id} is not a replica of set {found.id}")
        self._bump(found, instance_id)
        if found.sync.waits:  # its replicas are yet to be known to hold what the new primary acknowledges
            after = SyncState.RESYNCING if found.policy.durability is Durability.STRICT else SyncState.ASYNC
            self._session.execute(
                update(ReplicationSetRow).where(ReplicationSetRow.id == found.id)
                .values(sync_state=after.value, sync_changed=now()).execution_options(synchronize_session=False)
            )
        cleared = dict(streaming=None, lag_bytes=None, lag_seconds=None, health_detail=None, observed=None)
        for member_id, role in ((instance_id, Role.PRIMARY), (found.primary_id, Role.REPLICA)):
            self._session.execute(
                update(SetMemberRow).where(SetMemberRow.instance_id == member_id, SetMemberRow.set_id == found.id)
                .values(role=role.value, **cleared).execution_options(synchronize_session=False)
            )
        return self._reread(found.id)

    def fence(self, found: ReplicationSet, instance_id: str, moment: float) -> ReplicationSet:
        """Record that a failover fenced `instance_id` of `found` (as read) at `moment`: from now on nothing
        starts its server in its old role."""
        if found.member(instance_id) is None:
            raise ValueError(f"instance {instance_id} is not a member of set {found.id}")
        self._bump(found, found.primary_id)
        self._set_fenced(found.id, instance_id, moment)
        return self._reread(found.id)

    def unfence(self, instance_id: str) -> None:
        """A fenced member rejoined its set as a replica (no change of roles: no compare-and-swap)."""
        self._session.execute(
            update(SetMemberRow).where(SetMemberRow.instance_id == instance_id).values(fenced=None)
            .execution_options(synchronize_session=False)
        )

    def set_policy(self, set_id: str, policy: SetPolicy, mode_changed: bool = False) -> None:
        """The tenant's choices for its set (no change of roles: no compare-and-swap). A change of mode starts
        it asynchronous (`SyncState.ASYNC`): a set made synchronous is so once a replica is known to be."""
        values: dict[str, object] = dict(mode=policy.mode.value, auto_failover=policy.auto_failover,
                                         durability=policy.durability.value, updated=now())
        if mode_changed:
            values.update(sync_state=SyncState.ASYNC.value, sync_changed=now())
        self._session.execute(
            update(ReplicationSetRow).where(ReplicationSetRow.id == set_id).values(**values)
            .execution_options(synchronize_session=False)
        )

    def set_sync(self, found: ReplicationSet, state: SyncState, moment: float) -> bool:
        """Move the set's `SyncState` from where `found` (as read) says to `state` (False, nothing written: its
        primary, its members or its state changed since). Not a change of roles: its version stays."""
        result = self._session.execute(
            update(ReplicationSetRow)
            .where(ReplicationSetRow.id == found.id, ReplicationSetRow.sync_state == found.sync.value,
                   ReplicationSetRow.primary_id == found.primary_id, ReplicationSetRow.version == found.version)
            .values(sync_state=state.value, sync_changed=moment).execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def set_reader(self, set_id: str, reader: Address) -> None:
        """Record the set's reader endpoint (allocated once, with its first replica)."""
        self._session.execute(
            update(ReplicationSetRow).where(ReplicationSetRow.id == set_id)
            .values(reader_address=reader[0], reader_port=reader[1]).execution_options(synchronize_session=False)
        )

    def hold_writer(self, set_id: str, held: bool) -> None:
        """Have the set's writer endpoint refuse new connections (its primary is being replaced), or lead to
        its primary again (no change of roles: no compare-and-swap)."""
        self._session.execute(
            update(ReplicationSetRow).where(ReplicationSetRow.id == set_id).values(writer_held=held)
            .execution_options(synchronize_session=False)
        )

    def failed_over(self, set_id: str, moment: float) -> None:
        """The set failed over by itself at `moment` (the next automatic one waits `failover_quiet`)."""
        self._session.execute(
            update(ReplicationSetRow).where(ReplicationSetRow.id == set_id).values(failed_over=moment)
            .execution_options(synchronize_session=False)
        )

    def _set_fenced(self, set_id: str, instance_id: str, moment: float | None) -> None:
        self._session.execute(
            update(SetMemberRow).where(SetMemberRow.instance_id == instance_id, SetMemberRow.set_id == set_id)
            .values(fenced=moment).execution_options(synchronize_session=False)
        )

    def _bump(self, found: ReplicationSet, primary_id: str) -> None:
        result = self._session.execute(
            update(ReplicationSetRow)
            .where(ReplicationSetRow.id == found.id, ReplicationSetRow.version == found.version)
            .values(version=found.version + 1, primary_id=primary_id, updated=now())
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) != 1:
            raise StaleSet(f"replication set {found.id} changed since version {found.version}")

    def _reread(self, set_id: str) -> ReplicationSet:
        found = self.get(set_id)
        if found is None:
            raise StaleSet(f"replication set {set_id} is gone")
        return found

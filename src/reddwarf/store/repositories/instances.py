"""Instances: the spec a tenant asked for and the status the reconciler observed.

Status is written by compare-and-swap only (`transition`, and `record` which retries it): the conditions, the
statuses derived from them and a version move together in one conditional UPDATE.

The spec is stored as JSON without user passwords; each `UserSpec.password` is written encrypted through
`SecretRepository` under (instance id, "user:<name>@<host>") and put back as a `Secret` on read. Deletion is soft:
`mark_deleted` sets `deleted_at` and the instance disappears from `get`/`list`/`count` unless asked for.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from reddwarf.domain.accounts import RootHistory
from reddwarf.domain.conditions import Observation, advance, derive
from reddwarf.domain.errors import BadRequest, NotFound, TemporaryError
from reddwarf.domain.instance import Endpoint, Instance, InstanceSpec
from reddwarf.domain.replication import Durability, Mode, Role, SetPolicy, SyncState
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import Condition, Fault, InstanceStatus, OperatingStatus
from reddwarf.store.clock import now
from reddwarf.store.codec import conditions_from_json, conditions_to_json, spec_from_json, spec_to_json
from reddwarf.store.repositories.replication import health_of
from reddwarf.store.repositories.secrets import SecretRepository, user_secret_name
from reddwarf.store.rows import rowcount, table, xact_lock
from reddwarf.store.tables import InstanceRow, ReplicationSetRow, RootHistoryRow, SetMemberRow

_USER_PREFIX = user_secret_name("")
_INSTANCES = table(InstanceRow)
_INSERT = insert(_INSTANCES)
_BY_ID = select(_INSTANCES).where(_INSTANCES.c.id == bindparam("instance_id"))
# SET takes the columns named by the parameters (everything but "instance_id_"). A Core UPDATE: it does not
# refresh an InstanceRow loaded earlier in the same unit of work (no method here keeps one across it).
_UPDATE_BY_ID = update(_INSTANCES).where(_INSTANCES.c.id == bindparam("instance_id_"))
# The conditions' compare-and-swap: SET takes the observed generation (never moved back) and the columns named
# by the parameters, WHERE the version is still the one the writer read.
_TRANSITION = (
    update(_INSTANCES)
    .where(_INSTANCES.c.id == bindparam("instance_id_"), _INSTANCES.c.status_version == bindparam("expected_"))
    .values(
        observed_generation=case(
            (_INSTANCES.c.observed_generation > bindparam("observed_"), _INSTANCES.c.observed_generation),
            else_=bindparam("observed_"),
        )
    )
)
_STATUS_BY_ID = select(_INSTANCES.c.conditions, _INSTANCES.c.status_version).where(
    _INSTANCES.c.id == bindparam("instance_id")
)
# How many times `record` reads and tries again when another writer changed the status in between.
CAS_ATTEMPTS = 8


class InstanceRepository:
    def __init__(self, session: Session, secrets: SecretRepository) -> None:
        self._session = session
        self._secrets = secrets

    def add(self, instance: Instance) -> None:
        """Record a new instance (its id must be new: a duplicate is an IntegrityError); `created`/`updated`
        default to now when the instance leaves them at 0. Its statuses must be those its conditions give
        (`domain.conditions.derive`; BUILD for none): a ValueError otherwise."""
        if (instance.status, instance.operating_status) != derive(instance.conditions):
            raise ValueError(
                f"Instance {instance.id}: status {instance.status}/{instance.operating_status!r} is not the one "
                f"its conditions give, {derive(instance.conditions)}."
            )
        timestamp = now()
        created = instance.created or timestamp
        values = dict(
            id=instance.id,
            project_id=instance.project_id,
            name=instance.spec.name,
            spec=spec_to_json(instance.spec),
            status=instance.status.value,
            operating_status=instance.operating_status.value,
            endpoint_address=None if instance.endpoint is None else instance.endpoint.address,
            endpoint_port=None if instance.endpoint is None else instance.endpoint.port,
            fault_message=None if instance.fault is None else instance.fault.message,
            fault_details=None if instance.fault is None else instance.fault.details,
            fault_created=None if instance.fault is None else instance.fault.created,
            conditions=conditions_to_json(instance.conditions),
            volume_used_bytes=instance.volume_used_bytes,
            labels=dict(instance.labels),
            generation=instance.generation,
            observed_generation=instance.observed_generation,
            status_version=instance.status_version,
            deleting=instance.deleting,
            deleted_at=None,
            created=created,
            updated=instance.updated or created,
            workload_id=instance.workload_id,
        )
        self._session.execute(_INSERT, values)
        for user in instance.spec.users:
            self._secrets.put(instance.id, user_secret_name(user.name, user.host), user.password)

    def get(self, instance_id: str, *, include_deleted: bool = False) -> Instance | None:
        row = self._session.execute(_BY_ID, {"instance_id": instance_id}).first()
        if row is None or (row.deleted_at is not None and not include_deleted):
            return None
        return self._with_roles([_instance(row, self._secrets.of_owner(instance_id, prefix=_USER_PREFIX))])[0]

    def get_with_secrets(self, instance_id: str) -> tuple[Instance, dict[str, Secret]] | None:
        """A live instance and every secret it owns (name -> value: its users', "admin", ...), read together:
        what a worker needs before it acts on the instance."""
        row = self._session.execute(_BY_ID, {"instance_id": instance_id}).first()
        if row is None or row.deleted_at is not None:
            return None
        owned = self._secrets.of_owner(instance_id)
        users = {name: value for name, value in owned.items() if name.startswith(_USER_PREFIX)}
        return self._with_roles([_instance(row, users)])[0], owned

    def list(
        self,
        project_id: str | None,
        *,
        limit: int | None = None,
        marker: str | None = None,
        include_deleted: bool = False,
    ) -> builtins.list[Instance]:
        """Instances of `project_id` (every project when None), oldest first, ordered by (created, id).

        `marker` is the id of the last instance of the previous page; an unknown marker is a BadRequest.
        """
        query = select(InstanceRow)
        if project_id is not None:
            query = query.where(InstanceRow.project_id == project_id)
        if not include_deleted:
            query = query.where(InstanceRow.deleted_at.is_(None))
        if marker is not None:
            anchor = self._session.get(InstanceRow, marker)
            if anchor is None or (project_id is not None and anchor.project_id != project_id):
                raise BadRequest(f"Marker {marker} is not a known instance.", field="marker")
            query = query.where(_after(anchor.created, anchor.id))
        query = query.order_by(InstanceRow.created, InstanceRow.id)
        if limit is not None:
            query = query.limit(max(limit, 0))
        return self._to_domain(list(self._session.scalars(query)))

    def count_for_quota(self, project_id: str) -> int:
        """Like `count`, but first serialises every quota check of `project_id` until this unit of work ends.

        SQLite write units of work are already serial (BEGIN IMMEDIATE). On PostgreSQL, READ COMMITTED
        lets two concurrent creates both count N < limit and both insert; a transaction-scoped advisory
        lock keyed by the project makes the second wait for the first's commit and count it."""
        xact_lock(self._session, f"quota:{project_id}")
        return self.count(project_id)

    def quota_usage(self, project_id: str) -> tuple[int, int]:
        """(live instances, their total volume GB) of `project_id`, serialised like `count_for_quota`."""
        xact_lock(self._session, f"quota:{project_id}")
        query = select(InstanceRow.spec).where(InstanceRow.project_id == project_id, InstanceRow.deleted_at.is_(None))
        sizes = [int(spec.get("volume_size_gb") or 0) for spec in self._session.scalars(query)]
        return len(sizes), sum(sizes)

    def count(self, project_id: str) -> int:
        """Live (not deleted) instances of `project_id`, for quotas."""
        query = (
            select(func.count())
            .select_from(InstanceRow)
            .where(InstanceRow.project_id == project_id, InstanceRow.deleted_at.is_(None))
        )
        return int(self._session.scalar(query) or 0)

    def name_in_use(self, project_id: str, name: str) -> bool:
        query = select(InstanceRow.id).where(
            InstanceRow.project_id == project_id, InstanceRow.name == name, InstanceRow.deleted_at.is_(None)
        )
        return self._session.scalars(query.limit(1)).first() is not None

    def transition(
        self,
        instance_id: str,
        expected_version: int,
        conditions: tuple[Condition, ...],
        *,
        observed_generation: int,
        fault: Fault | None = None,
        clear_fault: bool = False,
        volume_used_bytes: int | None = None,
    ) -> bool:
        """Compare-and-swap of the instance's status (reconcilers only): if its `status_version` is still
        `expected_version`, write `conditions`, the `status`/`operating_status` derived from them
        (`domain.conditions.derive`), the observed generation (never moved back) and the next version, in ONE
        conditional UPDATE; True if it won, False if another writer got there first.

        Atomic on PostgreSQL too: a concurrent writer's uncommitted UPDATE holds the row, this one waits for
        its commit and then finds the version moved. A `fault` replaces the recorded one, `clear_fault`
        removes it; `volume_used_bytes` is left alone when None."""
        status, operating = derive(conditions)
        values: dict[str, object] = {
            "conditions": conditions_to_json(conditions),
            "status": status.value,
            "operating_status": operating.value,
            "status_version": expected_version + 1,
            "updated": now(),
        }
        if fault is not None:
            values.update(fault_message=fault.message, fault_details=fault.details, fault_created=fault.created)
        elif clear_fault:
            values.update(fault_message=None, fault_details=None, fault_created=None)
        if volume_used_bytes is not None:
            values["volume_used_bytes"] = volume_used_bytes
        parameters = {"instance_id_": instance_id, "expected_": expected_version, "observed_": observed_generation}
        result = self._session.execute(_TRANSITION, {**parameters, **values})
        return rowcount(result) == 1

    def record(
        self,
        instance_id: str,
        observation: Observation | None,
        message: str = "",
        *,
        generation: int,
        fault: Fault | None = None,
        clear_fault: bool = False,
        volume_used_bytes: int | None = None,
        attempts: int = CAS_ATTEMPTS,
    ) -> tuple[InstanceStatus, OperatingStatus]:
        """Apply `observation` (None: conditions unchanged, e.g. a fault alone) on top of whatever the store
        holds now: read the conditions and their version, compute the new ones (`domain.conditions.advance`),
        `transition`; on a lost race read again, at most `attempts` times. Returns the derived statuses.

        For a writer that owns the instance (an operation holding its lease): its observation holds whatever
        another writer did meanwhile. A writer whose view may be stale (the health sweep) calls `transition`
        with the version it saw instead, and gives up when it lost. NotFound for an unknown instance;
        TemporaryError when every attempt lost (the step is retried)."""
        for _ in range(attempts):
            current = self._session.execute(_STATUS_BY_ID, {"instance_id": instance_id}).first()
            if current is None:
                raise NotFound("Instance", instance_id)
            conditions = conditions_from_json(current.conditions)
            if observation is not None:
                conditions = advance(conditions, observation, message, now())
            if self.transition(
                instance_id, current.status_version, conditions,
                observed_generation=generation,
                fault=fault, clear_fault=clear_fault, volume_used_bytes=volume_used_bytes,
            ):
                return derive(conditions)
        raise TemporaryError(f"The status of instance {instance_id} kept changing under this write; retrying.")

    def set_endpoint(self, instance_id: str, endpoint: Endpoint | None) -> None:
        self._update(
            instance_id,
            {
                "endpoint_address": None if endpoint is None else endpoint.address,
                "endpoint_port": None if endpoint is None else endpoint.port,
                "updated": now(),
            },
        )

    def set_workload(self, instance_id: str, workload_id: str) -> None:
        """Record that the instance's server is the warm-pool slot `workload_id` (set once, at claim)."""
        self._update(instance_id, {"workload_id": workload_id, "updated": now()})

    def rename(self, instance_id: str, name: str) -> None:
        row = self._live_row(instance_id)
        spec = dict(row.spec)
        spec["name"] = name
        row.spec = spec
        row.name = name
        row.generation += 1
        row.updated = now()
        self._session.flush()

    def update_spec(self, instance_id: str, spec: InstanceSpec) -> int:
        """Replace the desired spec (and the stored user passwords); returns the new generation."""
        row = self._live_row(instance_id)
        row.spec = spec_to_json(spec)
        row.name = spec.name
        row.generation += 1
        row.updated = now()
        self._session.flush()
        wanted = {user_secret_name(user.name, user.host): user.password for user in spec.users}
        for name, password in wanted.items():
            self._secrets.put(instance_id, name, password)
        for name in self._secrets.names(instance_id):
            if name.startswith(_USER_PREFIX) and name not in wanted:
                self._secrets.delete(instance_id, name)
        return row.generation

    def set_labels(self, instance_id: str, labels: dict[str, str]) -> None:
        self._update(instance_id, {"labels": dict(labels), "updated": now()})

    def mark_deleting(self, instance_id: str) -> None:
        self._update(instance_id, {"deleting": True, "updated": now()})

    def mark_deleted(self, instance_id: str) -> None:
        """Soft delete; idempotent (a second call keeps the first `deleted_at`)."""
        timestamp = now()
        result = self._session.execute(
            update(InstanceRow)
            .where(InstanceRow.id == instance_id, InstanceRow.deleted_at.is_(None))
            .values(deleted_at=timestamp, deleting=True, updated=timestamp)
        )
        if rowcount(result) == 0 and self._session.get(InstanceRow, instance_id) is None:
            raise NotFound("Instance", instance_id)

    def record_root_enabled(self, instance_id: str, user_id: str, enabled_at: float | None = None) -> None:
        """Remember that `user_id` enabled root on the instance (Trove's root history; kept after disable)."""
        moment = now() if enabled_at is None else enabled_at
        self._session.add(RootHistoryRow(instance_id=instance_id, user_id=user_id, enabled_at=moment))
        self._session.flush()

    def root_history(self, instance_id: str) -> builtins.list[RootHistory]:
        """Every time root was enabled on the instance, oldest first (empty: root was never enabled)."""
        rows = self._session.scalars(
            select(RootHistoryRow).where(RootHistoryRow.instance_id == instance_id).order_by(RootHistoryRow.id)
        )
        return [RootHistory(enabled_at=row.enabled_at, user_id=row.user_id) for row in rows]

    def fingerprint(self) -> tuple[int, int, float | None]:
        """How many instance rows there are, the sum of their status versions and generations, and the newest
        `updated` stamp: it moves whenever any instance is added, written or removed, so a reader may keep
        its last `list` while it stays the same. The sums do not depend on the order in which writers
        committed (a stamp taken before a later-committing writer's stamp would not move the newest one)."""
        count, versions, newest = self._session.execute(select(
            func.count(InstanceRow.id),
            func.coalesce(func.sum(InstanceRow.status_version + InstanceRow.generation), 0),
            func.max(InstanceRow.updated),
        )).one()
        return int(count), int(versions), None if newest is None else float(newest)

    def with_root_history(self) -> set[str]:
        """The ids of the instances on which root was ever enabled (one query, for the health observer)."""
        return set(self._session.scalars(select(RootHistoryRow.instance_id).distinct()))

    def _update(self, instance_id: str, values: dict[str, object]) -> None:
        result = self._session.execute(_UPDATE_BY_ID, {"instance_id_": instance_id, **values})
        if rowcount(result) == 0:
            raise NotFound("Instance", instance_id)

    def _live_row(self, instance_id: str) -> InstanceRow:
        row = self._session.get(InstanceRow, instance_id)
        if row is None or row.deleted_at is not None:
            raise NotFound("Instance", instance_id)
        return row

    def _to_domain(self, rows: Sequence[InstanceRow]) -> builtins.list[Instance]:
        passwords = self._secrets.get_many([row.id for row in rows], prefix=_USER_PREFIX)
        return self._with_roles([_instance(row, passwords.get(row.id, {})) for row in rows])

    def _with_roles(self, instances: builtins.list[Instance]) -> builtins.list[Instance]:
        """`replica_of` and `replicas` of each, from the replication sets they are members of (two queries
        when any is a member; one when none is)."""
        by_id = {instance.id: instance for instance in instances}
        set_ids = set(self._session.scalars(
            select(SetMemberRow.set_id).where(SetMemberRow.instance_id.in_(list(by_id)))
        )) if by_id else set()
        if not set_ids:
            return instances
        rows = self._session.execute(
            select(SetMemberRow, ReplicationSetRow)
            .join(ReplicationSetRow, ReplicationSetRow.id == SetMemberRow.set_id)
            .where(SetMemberRow.set_id.in_(sorted(set_ids)))
            .order_by(SetMemberRow.created, SetMemberRow.instance_id)
        ).all()
        for member, set_row in rows:
            member_id = member.instance_id
            primary_id = set_row.primary_id
            listed = by_id.get(member_id)
            if listed is not None:
                listed.set_policy = SetPolicy(Mode(set_row.mode), set_row.auto_failover,
                                              Durability(set_row.durability))
                listed.set_sync = (SyncState(set_row.sync_state), set_row.sync_changed)
                listed.set_endpoints = (_pair(set_row.writer_address, set_row.writer_port),
                                        _pair(set_row.reader_address, set_row.reader_port))
            if member.role != Role.REPLICA.value:
                continue
            replica = by_id.get(member_id)
            if replica is not None:
                replica.replica_of = primary_id
                replica.replication_health = health_of(member)
                replica.fenced = member.fenced
            primary = by_id.get(primary_id)
            if primary is not None:
                primary.replicas = (*primary.replicas, member_id)
                health = health_of(member)
                streams = member.fenced is None and health is not None and health.state.streaming
                primary.streaming_replicas = (primary.streaming_replicas or 0) + int(streams)
        return instances


def _pair(address: str | None, port: int | None) -> tuple[str, int] | None:
    return None if address is None or port is None else (address, port)


def _after(created: float, instance_id: str) -> ColumnElement[bool]:
    return or_(
        InstanceRow.created > created,
        and_(InstanceRow.created == created, InstanceRow.id > instance_id),
    )


def _instance(row: InstanceRow | Row[Any], secrets: dict[str, Secret]) -> Instance:
    passwords = {name.removeprefix(_USER_PREFIX): value for name, value in secrets.items()}
    endpoint = None
    if row.endpoint_address is not None and row.endpoint_port is not None:
        endpoint = Endpoint(address=row.endpoint_address, port=row.endpoint_port)
    fault = None
    if row.fault_message is not None:
        fault = Fault(message=row.fault_message, details=row.fault_details or "", created=row.fault_created or 0.0)
    return Instance(
        id=row.id,
        project_id=row.project_id,
        spec=spec_from_json(row.spec, passwords),
        status=InstanceStatus(row.status),
        operating_status=OperatingStatus(row.operating_status),
        endpoint=endpoint,
        fault=fault,
        conditions=conditions_from_json(row.conditions),
        volume_used_bytes=row.volume_used_bytes,
        created=row.created,
        updated=row.updated,
        deleting=row.deleting,
        generation=row.generation,
        observed_generation=row.observed_generation,
        status_version=row.status_version,
        labels=dict(row.labels),
        workload_id=row.workload_id,
    )

"""The durable work queue and its step journal.

An operation is claimed with a lease: ONE conditional UPDATE that only matches while the operation is
active, due, and unleased (or its lease expired), so of several workers racing for it exactly one sees
rowcount 1. A worker that loses its lease (it stalled past `lease_expires`, or the operation was
superseded) finds out on `renew`, and its `release`/`complete`/`fail` change nothing.

The journal records, per (operation, step), that a step finished and what it produced; a worker resuming
an operation skips every step already in it.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Collection, Iterator
from typing import Any

from sqlalchemy import Row, Select, and_, bindparam, delete, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reddwarf.domain.operations import SET_SCOPED, conflicting_kinds, registered, set_conflicts
from reddwarf.store.clock import new_id, now
from reddwarf.store.listen import CHANNEL
from reddwarf.store.records import ACTIVE_STATES, Operation, OperationState
from reddwarf.store.rows import rowcount, table
from reddwarf.store.tables import OperationRow, OperationStepRow, SetMemberRow

log = logging.getLogger(__name__)

# How many due operations one claim looks at before giving up for this round (others won the rest).
_CLAIM_CANDIDATES = 8
# How far past the oldest due operations a claim looks for one whose turn it is.
_MAX_CANDIDATES = 400
_INSERT = insert(table(OperationRow))
_NOTIFY = text("SELECT pg_notify(:channel, :kind)")


class OperationRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def enqueue(
        self, kind: str, resource_id: str, payload: dict[str, Any] | None = None, *, not_before: float | None = None
    ) -> str:
        """Record a pending operation; returns its id. It becomes claimable at `not_before` (default now)."""
        timestamp = now()
        op_id = new_id()
        self._session.execute(_INSERT, _new_row(
            op_id, kind, resource_id, payload, timestamp, not_before=timestamp if not_before is None else not_before
        ))
        if (not_before is None or not_before <= timestamp) and self._session.get_bind().dialect.name == "postgresql":
            # Delivered at commit to every process's `store.listen.WorkListener`: their workers wake at once.
            self._session.execute(_NOTIFY, {"channel": CHANNEL, "kind": kind})
        log.debug("enqueued operation %s kind=%s resource=%s", op_id, kind, resource_id)
        return op_id

    def enqueue_child(
        self, parent: Operation, kind: str, resource_id: str, payload: dict[str, Any] | None = None
    ) -> str:
        """Record a child of the running operation `parent` (module docstring of `domain.operations`): it runs
        under the parent's scope, ordered as if accepted with it (operations accepted after the parent wait for
        it; its parent never blocks it), and the parent waits for it (`children`)."""
        timestamp = now()
        op_id = new_id()
        row = _new_row(op_id, kind, resource_id, payload, parent.created, not_before=timestamp)
        row.update(parent_id=parent.id, updated=timestamp)
        self._session.execute(_INSERT, row)
        if self._session.get_bind().dialect.name == "postgresql":
            self._session.execute(_NOTIFY, {"channel": CHANNEL, "kind": kind})
        log.debug("enqueued operation %s kind=%s resource=%s, a child of %s", op_id, kind, resource_id, parent.id)
        return op_id

    def children(self, parent_id: str) -> list[Operation]:
        """The children of `parent_id`, in the order they were recorded."""
        rows = self._session.scalars(
            select(OperationRow).where(OperationRow.parent_id == parent_id)
            .order_by(OperationRow.updated, OperationRow.id).execution_options(populate_existing=True)
        )
        return [_operation(row) for row in rows]

    def enqueue_leased(
        self, kind: str, resource_id: str, payload: dict[str, Any] | None, *, owner: str, lease_ttl: float
    ) -> Operation:
        """Record an operation already claimed by `owner` (attempt 1, leased for `lease_ttl` seconds): the
        hand-over to a worker of this process, which runs it without a claim of its own. Should that
        worker never take it, the lease expires and any worker claims it, as after a worker's crash."""
        timestamp = now()
        # Through JSON, as a claim would read it back: the worker sees the same payload either way.
        row = _new_row(new_id(), kind, resource_id, json.loads(json.dumps(payload or {})), timestamp,
                       not_before=timestamp)
        row.update(state=OperationState.RUNNING.value, attempts=1, lease_owner=owner,
                   lease_expires=timestamp + lease_ttl)
        self._session.execute(_INSERT, row)
        log.debug("enqueued operation %s kind=%s resource=%s, leased to %s", row["id"], kind, resource_id, owner)
        return Operation(**{name: row[name] for name in Operation.__slots__})

    def any_due(self, *, only: Collection[str] | None = None, skip: Collection[str] = ()) -> bool:
        """Whether a claim could find something: the idle poll asks this in a read-only transaction, so that
        an idle worker does not take the store's write lock (on SQLite) a few times a second."""
        return next(self._startable(only, skip, _now()), None) is not None

    def _startable(self, only: Collection[str] | None, skip: Collection[str], moment: float) -> Iterator[str]:
        """Ids of the due operations of the lane whose turn it is, oldest first. Pages through the due ones,
        so that operations waiting their turn (say, account writes queued behind a long create) never hide
        others that may start."""
        query = _candidates(None if only is None else tuple(sorted(only)), tuple(sorted(skip)))
        for offset in range(0, _MAX_CANDIDATES, _CLAIM_CANDIDATES):
            page = self._session.execute(query, {"moment": moment, "offset": offset}).all()
            for row in page:
                if not self._waits_its_turn(row.kind, row.resource_id, row.created, row.id, row.parent_id):
                    yield row.id
            if len(page) < _CLAIM_CANDIDATES:
                return

    def waits_its_turn(self, kind: str, resource_id: str) -> bool:
        """Would an operation of `kind` on `resource_id`, accepted now, have to wait for one accepted before
        it (pending or running, of a kind it conflicts with; see `domain.operations`)?"""
        return self._waits_its_turn(kind, resource_id, None, None)

    def _waits_its_turn(
        self, kind: str, resource_id: str, created: float | None, op_id: str | None, parent_id: str | None = None
    ) -> bool:
        if registered(kind) is None:
            return False  # a kind without rules (tests of the kernel) conflicts with nothing
        blockers = conflicting_kinds(kind)
        moment = _now()
        for other_id, other_kind, other_created, expires in self._session.execute(
            _ACTIVE_ON, {"resource_id": resource_id}
        ):
            if other_id in (op_id, parent_id) or other_kind not in blockers:
                continue
            if _before(created, op_id, other_created, other_id, expires, moment):
                return True
        return self._waits_for_its_set(kind, resource_id, created, op_id, parent_id)

    def _waits_for_its_set(
        self, kind: str, resource_id: str, created: float | None, op_id: str | None, parent_id: str | None = None
    ) -> bool:
        """Does an operation accepted before it on another member of the resource's replication set conflict
        with it (`domain.operations.set_conflicts`)? One indexed look-up, for the kinds that can conflict so."""
        if kind not in SET_SCOPED:
            return False
        moment = _now()
        for other_id, other_kind, other_created, expires in self._session.execute(
            _ACTIVE_IN_SET, {"resource_id": resource_id}
        ):
            if other_id in (op_id, parent_id) or registered(other_kind) is None or not set_conflicts(kind, other_kind):
                continue
            if _before(created, op_id, other_created, other_id, expires, moment):
                return True
        return False

    def claim(
        self, worker_id: str, lease_ttl: float, now: float | None = None, *,
        only: Collection[str] | None = None, skip: Collection[str] = (),
    ) -> Operation | None:
        """Lease the oldest due operation to `worker_id` for `lease_ttl` seconds, or return None. `only` /
        `skip` restrict the kinds this worker takes (a lane of its own for warm-pool builds, say)."""
        moment = _now() if now is None else now
        for op_id in self._startable(only, skip, moment):
            row = self._session.execute(
                _CLAIM, {"op_id": op_id, "moment": moment, "worker_id": worker_id, "expires": moment + lease_ttl}
            ).first()
            if row is not None:
                operation = _operation(row)
                log.debug("worker %s claimed operation %s (attempt %d)", worker_id, op_id, operation.attempts)
                return operation
        return None

    def renew(self, op_id: str, worker_id: str, lease_ttl: float) -> bool:
        """Extend the lease; False if `worker_id` no longer holds it (expired and taken, or superseded)."""
        moment = _now()
        result = self._session.execute(
            _RENEW, {"op_id": op_id, "worker_id": worker_id, "moment": moment, "expires": moment + lease_ttl}
        )
        return rowcount(result) == 1

    def release(self, op_id: str, worker_id: str, *, delay: float, error: str, count_attempt: bool = True) -> bool:
        """Give the operation back to retry after `delay` seconds, recording `error`. False if not held.

        `count_attempt=False` gives back the attempt the claim took: the handler was only waiting."""
        moment = _now()
        values: dict[str, Any] = {
            "lease_owner": None,
            "lease_expires": None,
            "not_before": moment + max(delay, 0.0),
            "last_error": error,
            "updated": moment,
        }
        if not count_attempt:
            values["attempts"] = OperationRow.attempts - 1
        return self._finish(op_id, worker_id, **values)

    def complete(self, op_id: str, worker_id: str) -> bool:
        """Mark the operation done. False (and nothing changes) if `worker_id` no longer holds it."""
        if rowcount(self._session.execute(_COMPLETE, {"op_id": op_id, "worker_id": worker_id, "moment": _now()})):
            return True
        self._not_held(op_id, worker_id)
        return False

    def fail(self, op_id: str, worker_id: str, error: str) -> bool:
        """Mark the operation failed for good with `error`. False if `worker_id` no longer holds it."""
        return self._finish(
            op_id, worker_id, state=OperationState.FAILED.value, lease_expires=None, last_error=error, updated=_now()
        )

    def supersede(self, resource_id: str, kinds: Collection[str]) -> int:
        """Retire the active operations of `kinds` on `resource_id` (e.g. a delete supersedes a build).

        A worker running a superseded operation keeps its lease until it notices (its next renewal fails)
        and lets go, or until the lease expires if it died: `live_leases` shows it meanwhile, so the
        superseding operation can wait instead of racing the step still in flight."""
        if not kinds:
            return 0
        result = self._session.execute(
            update(OperationRow)
            .where(
                OperationRow.resource_id == resource_id,
                OperationRow.kind.in_(list(kinds)),
                OperationRow.state.in_(sorted(ACTIVE_STATES)),
            )
            .values(state=OperationState.SUPERSEDED.value, updated=_now())
            .execution_options(synchronize_session=False)
        )
        count = rowcount(result)
        if count:
            log.info("superseded %d operation(s) on %s", count, resource_id)
        return count

    def let_go(self, op_id: str, worker_id: str, *, give_back_attempt: bool = False) -> bool:
        """Drop `worker_id`'s lease whatever the state (a worker that found its operation superseded);
        `give_back_attempt` for one it never started (a hand-over at shutdown)."""
        values: dict[str, Any] = {"lease_owner": None, "lease_expires": None, "updated": _now()}
        if give_back_attempt:
            values["attempts"] = OperationRow.attempts - 1
        result = self._session.execute(
            update(OperationRow)
            .where(OperationRow.id == op_id, OperationRow.lease_owner == worker_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def live_leases(self, resource_id: str, *, exclude: str | None = None) -> list[Operation]:
        """Operations on `resource_id` whose lease has not expired (running, or superseded but still held)."""
        moment = _now()
        rows = self._session.scalars(
            select(OperationRow)
            .where(
                OperationRow.resource_id == resource_id,
                OperationRow.id != (exclude or ""),
                OperationRow.lease_expires.is_not(None),
                OperationRow.lease_expires > moment,
            )
            .execution_options(populate_existing=True)
        )
        return [_operation(row) for row in rows]

    def get(self, op_id: str) -> Operation | None:
        row = self._session.scalars(
            select(OperationRow).where(OperationRow.id == op_id).execution_options(populate_existing=True)
        ).first()
        return None if row is None else _operation(row)

    def active_kinds(self) -> dict[str, str]:
        """Every resource with an operation pending or running, and the kind of its oldest such operation
        (one query, for the health observer's round)."""
        rows = self._session.execute(
            select(_OPS.c.resource_id, _OPS.c.kind)
            .where(_OPS.c.state.in_(sorted(ACTIVE_STATES)))
            .order_by(_OPS.c.created.desc(), _OPS.c.id.desc())
        )
        return {resource_id: kind for resource_id, kind in rows}  # the oldest, written last, wins

    def active_for(self, resource_id: str) -> list[Operation]:
        """Pending or running operations on `resource_id`, oldest first."""
        rows = self._session.scalars(
            select(OperationRow)
            .where(OperationRow.resource_id == resource_id, OperationRow.state.in_(sorted(ACTIVE_STATES)))
            .order_by(OperationRow.created, OperationRow.id)
            .execution_options(populate_existing=True)
        )
        return [_operation(row) for row in rows]

    def history_for(self, resource_id: str, limit: int | None = None) -> list[Operation]:
        """Finished operations (done, failed, superseded) on `resource_id`, oldest first; with `limit`,
        only the newest `limit` of them."""
        query = (
            select(OperationRow)
            .where(OperationRow.resource_id == resource_id, OperationRow.state.not_in(sorted(ACTIVE_STATES)))
            .order_by(OperationRow.created.desc(), OperationRow.id.desc())
            .execution_options(populate_existing=True)
        )
        if limit is not None:
            query = query.limit(max(limit, 0))
        return [_operation(row) for row in reversed(list(self._session.scalars(query)))]

    def steps(self, op_id: str) -> dict[str, dict[str, Any]]:
        """The journal: step name -> recorded result."""
        return {step: dict(result) for step, result in self._session.execute(_STEPS, {"op_id": op_id})}

    def record_step(self, op_id: str, step: str, result: dict[str, Any] | None = None) -> None:
        """Journal that `step` finished with `result`. Recording it again replaces the result and keeps the
        first completion time (and so its place in `list_steps`)."""
        statement = _RECORD_STEP[self._session.get_bind().dialect.name == "postgresql"]
        self._session.execute(
            statement, {"operation_id": op_id, "step": step, "result": dict(result or {}), "completed_at": _now()}
        )

    def forget_steps(self, op_id: str, steps: Collection[str]) -> None:
        """Take `steps` out of the journal: the next attempt runs them again (a wait that timed out rewinds
        to the step that started what it waited for)."""
        if steps:
            self._session.execute(
                delete(OperationStepRow)
                .where(OperationStepRow.operation_id == op_id, OperationStepRow.step.in_(list(steps)))
                .execution_options(synchronize_session=False)
            )

    def list_steps(self, op_id: str) -> list[tuple[str, float]]:
        """(step, completed_at) in the order the steps first completed."""
        rows = self._session.execute(
            select(OperationStepRow.step, OperationStepRow.completed_at)
            .where(OperationStepRow.operation_id == op_id)
            .order_by(OperationStepRow.completed_at, OperationStepRow.step)
        )
        return [(step, completed_at) for step, completed_at in rows]

    def _finish(self, op_id: str, worker_id: str, **values: Any) -> bool:
        result = self._session.execute(
            update(OperationRow)
            .where(
                OperationRow.id == op_id,
                OperationRow.lease_owner == worker_id,
                OperationRow.state == OperationState.RUNNING.value,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) == 1:
            return True
        self._not_held(op_id, worker_id)
        return False

    def _not_held(self, op_id: str, worker_id: str) -> None:
        """A worker's outcome found the operation no longer running under its lease: superseded (a delete)
        or taken by another worker. A lease still in its name is dropped, or whatever superseded the
        operation would wait for it to expire (`live_leases`)."""
        if self.let_go(op_id, worker_id):
            log.info("worker %s: operation %s was superseded; lease dropped, outcome not recorded", worker_id, op_id)
        else:
            log.warning("worker %s no longer holds operation %s; change not recorded", worker_id, op_id)


def _now() -> float:
    return now()


def _new_row(
    op_id: str, kind: str, resource_id: str, payload: dict[str, Any] | None, timestamp: float, *, not_before: float
) -> dict[str, Any]:
    return dict(
        id=op_id,
        kind=kind,
        resource_id=resource_id,
        payload=dict(payload or {}),
        state=OperationState.PENDING.value,
        attempts=0,
        lease_owner=None,
        lease_expires=None,
        not_before=not_before,
        last_error="",
        created=timestamp,
        updated=timestamp,
        parent_id=None,
    )


# The statements run on every step of every operation, built once (building one costs more than running it
# on SQLite) and executed with bound parameters.
_RENEW = (
    update(table(OperationRow))
    .where(
        OperationRow.id == bindparam("op_id"),
        OperationRow.lease_owner == bindparam("worker_id"),
        OperationRow.state == OperationState.RUNNING.value,
        OperationRow.lease_expires.is_not(None),
        OperationRow.lease_expires >= bindparam("moment"),
    )
    .values(lease_expires=bindparam("expires"), updated=bindparam("moment"))
)


def _record_step_statement(insert: Any) -> Any:
    """Upsert of one journal entry: a re-run replaces the result and keeps the first completion time."""
    statement = insert(table(OperationStepRow)).values(
        operation_id=bindparam("operation_id"),
        step=bindparam("step"),
        result=bindparam("result"),
        completed_at=bindparam("completed_at"),
    )
    return statement.on_conflict_do_update(
        index_elements=["operation_id", "step"], set_={"result": statement.excluded.result}
    )


# Indexed by "is the store PostgreSQL?".
_RECORD_STEP = (_record_step_statement(sqlite.insert), _record_step_statement(postgresql.insert))


_OPS = table(OperationRow)
_STEP_ROWS = table(OperationStepRow)
# Due and not leased at `moment`.
_CLAIMABLE = and_(
    _OPS.c.state.in_(sorted(ACTIVE_STATES)),
    _OPS.c.not_before <= bindparam("moment"),
    or_(_OPS.c.lease_expires.is_(None), _OPS.c.lease_expires < bindparam("moment")),
)
# Lease one due operation; RETURNING gives the claimed row (SQLite >= 3.35 and PostgreSQL).
_CLAIM = (
    update(_OPS)
    .where(_OPS.c.id == bindparam("op_id"), _CLAIMABLE)
    .values(
        state=OperationState.RUNNING.value,
        attempts=_OPS.c.attempts + 1,
        lease_owner=bindparam("worker_id"),
        lease_expires=bindparam("expires"),
        updated=bindparam("moment"),
    )
    .returning(*_OPS.c)
)
def _before(
    created: float | None, op_id: str | None, other_created: float, other_id: str, expires: float | None, moment: float
) -> bool:
    """Does a conflicting operation go first: one accepted before it (a child counts as accepted with its
    parent), or one that runs now whatever its age (a child must not start beside an operation accepted after
    its parent that already holds the resource)?"""
    if created is None or (other_created, other_id) < (created, op_id or ""):
        return True
    return expires is not None and expires > moment


# The operations pending or running on a resource: what a candidate may have to wait for.
_ACTIVE_ON = select(_OPS.c.id, _OPS.c.kind, _OPS.c.created, _OPS.c.lease_expires).where(
    _OPS.c.resource_id == bindparam("resource_id"), _OPS.c.state.in_(sorted(ACTIVE_STATES))
)
# The operations pending or running on the OTHER members of a resource's replication set.
_MEMBERS = table(SetMemberRow)
_SAME_SET = select(_MEMBERS.c.set_id).where(_MEMBERS.c.instance_id == bindparam("resource_id")).scalar_subquery()
_ACTIVE_IN_SET = select(_OPS.c.id, _OPS.c.kind, _OPS.c.created, _OPS.c.lease_expires).where(
    _OPS.c.resource_id.in_(
        select(_MEMBERS.c.instance_id).where(
            _MEMBERS.c.set_id == _SAME_SET, _MEMBERS.c.instance_id != bindparam("resource_id")
        )
    ),
    _OPS.c.state.in_(sorted(ACTIVE_STATES)),
)
_STEPS = select(_STEP_ROWS.c.step, _STEP_ROWS.c.result).where(_STEP_ROWS.c.operation_id == bindparam("op_id"))
_COMPLETE = (
    update(_OPS)
    .where(
        _OPS.c.id == bindparam("op_id"),
        _OPS.c.lease_owner == bindparam("worker_id"),
        _OPS.c.state == OperationState.RUNNING.value,
    )
    .values(state=OperationState.DONE.value, lease_expires=None, updated=bindparam("moment"))
)


@functools.cache
def _candidates(
    only: tuple[str, ...] | None, skip: tuple[str, ...]
) -> Select[tuple[str, str, str, float, str | None]]:
    """The due operations a worker of this lane may claim, oldest first (one statement per lane)."""
    query = select(_OPS.c.id, _OPS.c.kind, _OPS.c.resource_id, _OPS.c.created, _OPS.c.parent_id).where(_CLAIMABLE)
    if only is not None:
        query = query.where(_OPS.c.kind.in_(only))
    if skip:
        query = query.where(_OPS.c.kind.not_in(skip))
    ordered = query.order_by(_OPS.c.not_before, _OPS.c.created, _OPS.c.id)
    return ordered.limit(_CLAIM_CANDIDATES).offset(bindparam("offset"))


def _operation(row: OperationRow | Row[Any]) -> Operation:
    return Operation(
        id=row.id,
        kind=row.kind,
        resource_id=row.resource_id,
        payload=dict(row.payload),
        state=row.state,
        attempts=row.attempts,
        lease_owner=row.lease_owner,
        lease_expires=row.lease_expires,
        not_before=row.not_before,
        created=row.created,
        updated=row.updated,
        last_error=row.last_error,
        parent_id=row.parent_id,
    )

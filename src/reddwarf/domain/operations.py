"""The operation registry: every kind of durable operation, its payload model, deadline and conflict rules.

Services record operations and reconcilers run them; both name a kind through `Kind` and read or build its
payload through the kind's model, so no kind is spelled twice and a payload's shape is checked where it is
written and where it is read. `workflows` holds one handler per kind (a test fails when a kind has none).

Conflicts are per resource (an instance, a warm-pool slot). Each kind belongs to a `Lane`:

- `LIFECYCLE` (create, restore, delete, restart, repair): owns the server; conflicts with every other operation on
  the resource.
- `ACCOUNTS` (databases, users, grants): conflict with the lifecycle and with each other (a tenant's
  account writes apply one at a time, in the order they were accepted). Later kinds such as a backup
  belong to lanes that conflict with the lifecycle but not with account writes, as in Trove.
- `POOL` (warm-pool slot build and destroy): only ever on a slot, never on an instance.
- `BACKUP` (taking a backup or a snapshot, on the instance): conflicts with the lifecycle and with another
  backup, not with account writes (as Trove: accounts can change while a backup runs; only other actions
  wait).
- `BACKUP_FILES` (deleting a backup's artifacts or a snapshot's image, verifying a backup, streaming a
  backup from a snapshot, on it): only with itself.
- `REPLICATION` (bringing a primary's files and slots in line with its set): with the lifecycle and itself.

Conflicts also reach across a replication set (`domain.replication`): a kind's `set_lanes` are the lanes it
may not run beside on the OTHER members of the resource's set (a replica's create, which seeds from its
primary, with the primary's restart or delete). Two operations on different members of one set conflict when
either one's `set_lanes` holds the other's lane.

An operation may record children (`OperationContext.enqueue_children`: another kind, on another resource,
in the transaction that journals the step, so exactly once). A child runs under its parent's scope: it is
ordered as if accepted with its parent (it never waits for its parent, and what was accepted after the parent
waits for it where they conflict), and the parent waits for its children (`wait_children`): a child that
failed fails the parent with its error; one superseded (its resource deleted) has ended. Both are durable
operations of their own, so after a crash at any point each resumes from its own journal. An eject re-points
its other replicas as children (`instance.replica.repoint`); a replica seeded from a backup or a snapshot will
take its seed as one.

The claim never starts an operation while an operation accepted before it on the same resource (or, as
above, on another member of its set), and still pending or running, conflicts with it: conflicting
operations run in the order they were accepted, and one waiting for its turn keeps its place. A
`supersedes` kind (delete) ends the pending and running operations of the kinds it lists when it is
accepted, instead of waiting behind them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

ANY_HOST = "%"


class Kind(StrEnum):
    INSTANCE_CREATE = "instance.create"
    INSTANCE_RESTORE = "instance.restore"
    INSTANCE_DELETE = "instance.delete"
    INSTANCE_RESTART = "instance.restart"
    INSTANCE_REPAIR = "instance.reconcile"
    REPLICA_CREATE = "instance.replica.create"
    REPLICA_DETACH = "instance.replica.detach"
    REPLICA_PROMOTE = "instance.replica.promote"
    REPLICA_EJECT = "instance.replica.eject"
    REPLICA_REJOIN = "instance.replica.rejoin"
    REPLICA_REPOINT = "instance.replica.repoint"
    SET_CONVERGE = "instance.replication.converge"
    DATABASES_CREATE = "instance.databases.create"
    DATABASES_DELETE = "instance.databases.delete"
    USERS_CREATE = "instance.users.create"
    USERS_UPDATE = "instance.users.update"
    USERS_PASSWORDS = "instance.users.passwords"
    USERS_DELETE = "instance.users.delete"
    USERS_GRANT = "instance.users.grant"
    USERS_REVOKE = "instance.users.revoke"
    BACKUP_CREATE = "backup.create"
    BACKUP_DELETE = "backup.delete"
    BACKUP_VERIFY = "backup.verify"
    BACKUP_FROM_SNAPSHOT = "backup.from_snapshot"
    SNAPSHOT_CREATE = "snapshot.create"
    SNAPSHOT_DELETE = "snapshot.delete"
    POOL_BUILD = "pool.build"
    POOL_DESTROY = "pool.destroy"


class Lane(StrEnum):
    LIFECYCLE = "lifecycle"
    ACCOUNTS = "accounts"
    POOL = "pool"
    BACKUP = "backup"
    BACKUP_FILES = "backup_files"
    REPLICATION = "replication"


# -- payloads -------------------------------------------------------------------------------------------


class Payload(BaseModel):
    """A kind's payload: names and flags only, never a secret (passwords travel in the secrets repository,
    owned by the operation id, under the names `password_secret` gives)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoPayload(Payload):
    pass


class EjectPayload(Payload):
    """An eject asked by a tenant (Trove's `eject_replica_source`), or decided by the failover watch
    (`automatic`, with what it saw: `reason`)."""

    automatic: bool = False
    reason: str = ""


class DatabaseEntry(Payload):
    name: str
    character_set: str | None = None
    collate: str | None = None


class DatabasesCreate(Payload):
    databases: tuple[DatabaseEntry, ...]


class DatabaseDelete(Payload):
    name: str


class UserRef(Payload):
    name: str
    host: str = ANY_HOST


class UserEntry(UserRef):
    databases: tuple[str, ...] = ()


class UsersCreate(Payload):
    """Each user's password is the secret `password_secret(index)`."""

    users: tuple[UserEntry, ...]


class UserUpdate(UserRef):
    """`password`: the new password is the secret `password_secret()`."""

    new_name: str | None = None
    new_host: str | None = None
    password: bool = False


class UsersPasswords(Payload):
    """Each user's new password is the secret `password_secret(index)`."""

    users: tuple[UserRef, ...]


class UserDelete(UserRef):
    pass


class Grant(UserRef):
    databases: tuple[str, ...]


class Revoke(UserRef):
    database: str


class BackupCreate(Payload):
    """Take the backup `backup_id` of the operation's instance."""

    backup_id: str


class SnapshotCreate(Payload):
    """Take the snapshot `snapshot_id` of the operation's instance."""

    snapshot_id: str


PASSWORD_SECRET = "password"


def password_secret(index: int | None = None) -> str:
    """The secret name (owner: the operation id) of a write's password, or of its `index`-th user's."""
    return PASSWORD_SECRET if index is None else f"{PASSWORD_SECRET}:{index}"


# -- the registry ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What the kernel knows of a kind: its payload model, its deadline (seconds from acceptance), its lane,
    the kinds it supersedes when accepted, a description for faults and events, and the lanes it conflicts
    with on the other members of its resource's replication set."""

    kind: Kind
    payload: type[Payload]
    deadline: float
    lane: Lane
    description: str
    supersedes: frozenset[Kind] = frozenset()
    set_lanes: frozenset[Lane] = frozenset()


MINUTE = 60.0
HOUR = 60 * MINUTE
_ACCOUNT_DEADLINE = 5 * MINUTE

REGISTRY: Mapping[Kind, KindSpec] = {
    spec.kind: spec
    for spec in (
        # A create may build a data directory and start a cold server; a 1 GB volume takes seconds to make.
        KindSpec(Kind.INSTANCE_CREATE, NoPayload, 15 * MINUTE, Lane.LIFECYCLE, "Creating the instance"),
        # A create from a backup streams, verifies and prepares the whole chain: hours for a large one.
        KindSpec(Kind.INSTANCE_RESTORE, NoPayload, 6 * HOUR, Lane.LIFECYCLE, "Restoring the instance from a backup"),
        KindSpec(Kind.INSTANCE_DELETE, NoPayload, 15 * MINUTE, Lane.LIFECYCLE, "Deleting the instance",
                 supersedes=frozenset({Kind.INSTANCE_CREATE, Kind.INSTANCE_RESTORE, Kind.INSTANCE_RESTART,
                                       Kind.INSTANCE_REPAIR, Kind.REPLICA_CREATE, Kind.REPLICA_DETACH,
                                       Kind.SET_CONVERGE, Kind.REPLICA_REJOIN,
                                       Kind.REPLICA_REPOINT})),
        # A replica is seeded from its primary's server (the whole data set, streamed): the primary must not
        # restart or go away meanwhile; its backups and account writes go on.
        KindSpec(Kind.REPLICA_CREATE, NoPayload, 6 * HOUR, Lane.LIFECYCLE, "Creating a replica",
                 set_lanes=frozenset({Lane.LIFECYCLE})),
        # A detach promotes the replica on its own and drops its slot on the primary: a restart of either
        # waits (and a replica's create, which rewrites the primary's files, does too).
        KindSpec(Kind.REPLICA_DETACH, NoPayload, 15 * MINUTE, Lane.LIFECYCLE, "Detaching a replica",
                 set_lanes=frozenset({Lane.LIFECYCLE})),
        # A switchover stops the primary, promotes the replica and has every other member follow it: nothing
        # else may run on any member meanwhile (a backup or an account write on the old primary would fail
        # half-way), and a delete of any member waits for it (never superseded half-way).
        KindSpec(Kind.REPLICA_PROMOTE, NoPayload, 15 * MINUTE, Lane.LIFECYCLE, "Promoting a replica",
                 set_lanes=frozenset({Lane.LIFECYCLE, Lane.ACCOUNTS, Lane.BACKUP, Lane.REPLICATION})),
        # A failover, on the dead primary: it fences it, promotes the most advanced replica and re-points the
        # others. The primary's own repair (the health loop's) would race it: superseded.
        KindSpec(Kind.REPLICA_EJECT, EjectPayload, 15 * MINUTE, Lane.LIFECYCLE, "Ejecting a replication source",
                 supersedes=frozenset({Kind.INSTANCE_REPAIR, Kind.INSTANCE_RESTART}),
                 set_lanes=frozenset({Lane.LIFECYCLE, Lane.ACCOUNTS, Lane.BACKUP, Lane.REPLICATION})),
        # A fenced former primary rewound from its new primary and started as its replica: the new primary's
        # restart waits (and the other way round).
        KindSpec(Kind.REPLICA_REJOIN, NoPayload, 6 * HOUR, Lane.LIFECYCLE, "Rejoining a replication set",
                 set_lanes=frozenset({Lane.LIFECYCLE})),
        # A replica made to follow its set's primary as the store has it now (its files rewritten, reloaded):
        # a child of an eject; a restart of the replica accepted after the eject waits for it.
        KindSpec(Kind.REPLICA_REPOINT, NoPayload, 10 * MINUTE, Lane.LIFECYCLE, "Following a new primary"),
        # A primary's files, socket directory and slots made to match its set as the store has it now (after a
        # replica left): ordered with its lifecycle and with every replica create of its set, which rewrite
        # the same; one attempt (a primary that does not answer is left as it is, and is no failure of its).
        KindSpec(Kind.SET_CONVERGE, NoPayload, 10 * MINUTE, Lane.REPLICATION,
                 "Updating a primary for its replicas", set_lanes=frozenset({Lane.LIFECYCLE})),
        KindSpec(Kind.INSTANCE_RESTART, NoPayload, 10 * MINUTE, Lane.LIFECYCLE, "Restarting the instance"),
        KindSpec(Kind.INSTANCE_REPAIR, NoPayload, 10 * MINUTE, Lane.LIFECYCLE, "Repairing the instance"),
        KindSpec(Kind.DATABASES_CREATE, DatabasesCreate, _ACCOUNT_DEADLINE, Lane.ACCOUNTS, "Creating databases"),
        KindSpec(Kind.DATABASES_DELETE, DatabaseDelete, _ACCOUNT_DEADLINE, Lane.ACCOUNTS, "Deleting a database"),
        KindSpec(Kind.USERS_CREATE, UsersCreate, _ACCOUNT_DEADLINE, Lane.ACCOUNTS, "Creating users"),
        KindSpec(Kind.USERS_UPDATE, UserUpdate, _ACCOUNT_DEADLINE, Lane.ACCOUNTS, "Updating a user"),
        KindSpec(Kind.USERS_PASSWORDS, UsersPasswords, _ACCOUNT_DEADLINE, Lane.ACCOUNTS, "Changing user passwords"),
        KindSpec(Kind.USERS_DELETE, UserDelete, _ACCOUNT_DEADLINE, Lane.ACCOUNTS, "Deleting a user"),
        KindSpec(Kind.USERS_GRANT, Grant, _ACCOUNT_DEADLINE, Lane.ACCOUNTS, "Granting database access"),
        KindSpec(Kind.USERS_REVOKE, Revoke, _ACCOUNT_DEADLINE, Lane.ACCOUNTS, "Revoking database access"),
        # A backup streams the whole data set (~1 TB an hour at the tools' speed on two cores).
        KindSpec(Kind.BACKUP_CREATE, BackupCreate, 6 * HOUR, Lane.BACKUP, "Taking a backup"),
        KindSpec(Kind.BACKUP_DELETE, NoPayload, 15 * MINUTE, Lane.BACKUP_FILES, "Deleting a backup"),
        # A verification restores the backup into a throwaway server (the restore's pace), checks, removes it;
        # on the backup's files lane, a delete of the backup waits for it.
        KindSpec(Kind.BACKUP_VERIFY, NoPayload, 6 * HOUR, Lane.BACKUP_FILES, "Verifying a backup"),
        # A backup streamed from a snapshot (by a throwaway server started on a copy of it), on the backup:
        # the instance's own lanes are held only while the snapshot is taken (`snapshot.create`).
        KindSpec(Kind.BACKUP_FROM_SNAPSHOT, NoPayload, 6 * HOUR, Lane.BACKUP_FILES,
                 "Taking a backup from a snapshot"),
        # A snapshot freezes the instance for a fraction of a second; on its lane, it never overlaps a
        # backup or a restart (a CHECKPOINT may wait on a busy server: minutes at most).
        KindSpec(Kind.SNAPSHOT_CREATE, SnapshotCreate, 10 * MINUTE, Lane.BACKUP, "Taking a snapshot"),
        KindSpec(Kind.SNAPSHOT_DELETE, NoPayload, 10 * MINUTE, Lane.BACKUP_FILES, "Deleting a snapshot"),
        KindSpec(Kind.POOL_BUILD, NoPayload, 15 * MINUTE, Lane.POOL, "Building a warm-pool server"),
        KindSpec(Kind.POOL_DESTROY, NoPayload, 10 * MINUTE, Lane.POOL, "Destroying a warm-pool server"),
    )
}

# Which lanes may not run together on one resource (symmetric). A lane absent from another's set runs
# beside it.
_CONFLICTS: Mapping[Lane, frozenset[Lane]] = {
    Lane.LIFECYCLE: frozenset({Lane.LIFECYCLE, Lane.ACCOUNTS, Lane.POOL, Lane.BACKUP, Lane.REPLICATION}),
    Lane.ACCOUNTS: frozenset({Lane.LIFECYCLE, Lane.ACCOUNTS}),
    Lane.POOL: frozenset({Lane.LIFECYCLE, Lane.POOL}),
    Lane.BACKUP: frozenset({Lane.LIFECYCLE, Lane.BACKUP}),
    Lane.BACKUP_FILES: frozenset({Lane.BACKUP_FILES}),
    Lane.REPLICATION: frozenset({Lane.LIFECYCLE, Lane.REPLICATION}),
}

KINDS_BY_LANE: Mapping[Lane, frozenset[Kind]] = {
    lane: frozenset(k for k, spec in REGISTRY.items() if spec.lane is lane) for lane in Lane
}


def registered(kind: str) -> KindSpec | None:
    """The registry entry of `kind`, or None for a kind nobody registered (the kernel's own tests use some)."""
    try:
        return REGISTRY[Kind(kind)]
    except ValueError:
        return None


def spec_of(kind: str) -> KindSpec:
    """The registry entry of `kind`; KeyError for a kind nobody registered."""
    return REGISTRY[Kind(kind)]


def conflicts(a: str, b: str) -> bool:
    """May operations of kinds `a` and `b` NOT run at the same time on one resource?"""
    return spec_of(b).lane in _CONFLICTS[spec_of(a).lane]


def conflicting_kinds(kind: str) -> frozenset[Kind]:
    """Every kind that may not run beside `kind` on one resource (it included, where it conflicts with itself)."""
    lanes = _CONFLICTS[spec_of(kind).lane]
    return frozenset(k for lane in lanes for k in KINDS_BY_LANE[lane])


P = TypeVar("P", bound=Payload)


def set_conflicts(a: str, b: str) -> bool:
    """May operations of kinds `a` and `b`, on two different members of one replication set, NOT run at the
    same time?"""
    spec_a, spec_b = spec_of(a), spec_of(b)
    return spec_b.lane in spec_a.set_lanes or spec_a.lane in spec_b.set_lanes


_SET_LANES: frozenset[Lane] = frozenset(lane for spec in REGISTRY.values() for lane in spec.set_lanes)
# The kinds that may conflict with an operation on another member of their set: the others never look.
SET_SCOPED: frozenset[Kind] = frozenset(
    k for k, spec in REGISTRY.items() if spec.set_lanes or spec.lane in _SET_LANES
)


def payload_of(kind: str, raw: Mapping[str, Any] | None, model: type[P]) -> P:
    """The stored payload of an operation of `kind`, parsed with the kind's model (which must be `model`)."""
    registered = spec_of(kind).payload
    if registered is not model:
        raise TypeError(f"operation kind {kind} carries {registered.__name__}, not {model.__name__}")
    return model.model_validate(dict(raw or {}))

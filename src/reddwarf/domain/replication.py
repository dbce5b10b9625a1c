"""Replication sets: members with roles (docs/replication.md).

One model serves a single instance, a primary with replicas, and later a multi-node cluster (DESIGN.md rule
7): a `ReplicationSet` is a group of instances of one project and one datastore version, each a `Member`
with a `Role`. An instance that belongs to no recorded set is the one-member case (its own primary); a set
is recorded when its first replica is requested and dissolved when its last replica leaves.

The set's record changes only by compare-and-swap on its `version` (`store.repositories.replication`): two
operations that both read version 7 cannot both write version 8, so two promotions, or a promotion and a
replica's create, never interleave their writes to the roles.

`Topology` is what one member's server needs to know of its set, handed to the engine with the workload:
whom it follows (the primary's placement; None when it is the primary) under which slot name, and which
members may replicate from it (their OS users, where the runtime authenticates peers by OS user).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reddwarf.domain.certificates import Issued
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement


class Role(StrEnum):
    PRIMARY = "primary"
    REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """What a replica's primary says of it (`Replication.observe`): streaming or not (`detail` says why not,
    in a tenant's words), and how far behind it is, in bytes of log and in seconds (None: not known)."""

    streaming: bool
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SyncReading:
    """What a primary says of its synchronous replication now (`Replication.sync_reading`): whether its commits
    wait for a replica (`waits`, its configuration as loaded), how far its log goes (`position`), how many of
    its replicas stream from it now (`streaming`), the furthest position a replica that acknowledges commits
    has flushed (`synced`; None: none does now), and whether one streaming replica is close enough behind that
    commits waiting for it would not stall (`caught_up`). Positions order as `Replication.received`'s do."""

    waits: bool
    position: int
    streaming: int
    synced: int | None = None
    caught_up: bool = False


@dataclass(frozen=True, slots=True)
class ReplicaHealth:
    """A replica's state as the replication watch last recorded it, and when (epoch seconds)."""

    state: ReplicaState
    observed: float


@dataclass(frozen=True, slots=True)
class Member:
    """`fenced`: when a failover fenced it (None: it never was, or it has rejoined since)."""

    instance_id: str
    role: Role
    created: float = 0.0
    health: ReplicaHealth | None = None
    fenced: float | None = None


class Mode(StrEnum):
    """How a set's primary acknowledges a commit: once it is durable on the primary (ASYNC), or once a replica
    has it too (SYNC)."""

    ASYNC = "async"
    SYNC = "sync"


class Durability(StrEnum):
    """What a synchronous set does when no replica can acknowledge a commit (docs/failover.md): STRICT, its
    commits wait (a condition on the primary says why); AVAILABLE, it drops to asynchronous, recorded in the
    store before any commit is acknowledged without a replica, and fails over by itself again only once a
    replica is known to be synchronous again."""

    STRICT = "strict"
    AVAILABLE = "available"


class SyncState(StrEnum):
    """Where a set in synchronous mode stands now. SYNC: every commit its primary acknowledged is on a replica
    (the failover's most advanced replica has them all). RESYNCING: commits wait for a replica again, but none
    is known yet to hold what was acknowledged before (a new primary's replicas, or a set coming back from
    ASYNC). ASYNC: commits do not wait (no replica has streamed yet, or an AVAILABLE set had none that could);
    a set in ASYNC or RESYNCING is never failed over by itself."""

    SYNC = "sync"
    RESYNCING = "resyncing"
    ASYNC = "async"

    @property
    def waits(self) -> bool:
        """Do its primary's commits wait for a replica?"""
        return self is not SyncState.ASYNC


@dataclass(frozen=True, slots=True)
class SetPolicy:
    """What the tenant chose for its set (`replication` in the primary's view): its mode, what a synchronous
    set does without a replica (`durability`), and whether Reddwarf fails it over by itself when its primary
    dies or hangs (on by default for a set with a replica)."""

    mode: Mode = Mode.ASYNC
    auto_failover: bool = True
    durability: Durability = Durability.STRICT


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """What a request asks to change of a set's policy (None: leave it)."""

    mode: Mode | None = None
    auto_failover: bool | None = None
    durability: Durability | None = None

    def applied_to(self, policy: SetPolicy) -> SetPolicy:
        return SetPolicy(mode=policy.mode if self.mode is None else self.mode,
                         auto_failover=policy.auto_failover if self.auto_failover is None else self.auto_failover,
                         durability=policy.durability if self.durability is None else self.durability)


Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ReplicationSet:
    """A recorded set: exactly one primary (`primary_id`), any number of replicas; `version` is what the
    next compare-and-swap expects. `writer`: the address and port tenants write to, the primary's own when
    the set was formed, whichever member is the primary now; `reader`: the address spread over its healthy
    replicas (None until it is allocated); `failed_over`: when it last failed over by itself (epoch seconds);
`writer_held`: its writer endpoint refuses new connections while its primary is being replaced; `sync`: where a
set in synchronous mode stands (`SyncState`), and since when (`sync_changed`, epoch seconds)."""

    id: str
    project_id: str
    primary_id: str
    members: tuple[Member, ...]
    version: int = 0
    created: float = 0.0
    updated: float = 0.0
    policy: SetPolicy = SetPolicy()
    writer: Address | None = None
    reader: Address | None = None
    failed_over: float | None = None
    writer_held: bool = False
    sync: SyncState = SyncState.ASYNC
    sync_changed: float | None = None

    @property
    def synchronous_names(self) -> tuple[str, ...]:
        """The slots of the replicas one of which its primary's commits wait for now (none: they do not)."""
        if self.policy.mode is not Mode.SYNC or not self.sync.waits:
            return ()
        return tuple(slot_name(r) for r in self.replica_ids)

    def member(self, instance_id: str) -> Member | None:
        return next((m for m in self.members if m.instance_id == instance_id), None)

    @property
    def replica_ids(self) -> tuple[str, ...]:
        """The replicas, oldest first."""
        return tuple(m.instance_id for m in self.members if m.role is Role.REPLICA)


@dataclass(frozen=True, slots=True)
class Topology:
    """What a member's server needs of its set. `upstream`: the primary this member follows (None: it is the
    primary); `slot`: the name this member replicates under on its upstream; `peers`: the placements of the
    other members, who may replicate from this one. For engines whose members reach each other over TCP
    (`Replication.uses_tls`): `tls`, the member's certificate (server and client, naming its address) and key
    from its set's own CA, and that CA's certificate; `credential`, the password of the set's replication
    account."""

    set_id: str
    upstream: Placement | None = None
    slot: str = ""
    peers: tuple[Placement, ...] = ()
    tls: Issued | None = None
    credential: Secret | None = None
    # The set's replicas (by slot) one of which each commit of its primary waits for; none: asynchronous. A
    # replica is told too (MariaDB's replica side acknowledges only when asked to).
    synchronous: tuple[str, ...] = ()

    @property
    def is_replica(self) -> bool:
        return self.upstream is not None


SLOT_PREFIX = "reddwarf_"


def slot_name(instance_id: str) -> str:
    """The replication slot (PostgreSQL) or channel name of `instance_id` on its upstream: lowercase letters,
    digits and underscores only, at most 63 characters, and one per member whatever its upstream."""
    digits = "".join(ch for ch in instance_id.lower() if ch in "0123456789abcdef")
    if len(digits) < 12:
        raise ValueError(f"instance id {instance_id!r} has too few hex digits for a slot name")
    return SLOT_PREFIX + digits[:32]


# Trove's limit on replicas made by one create (`replica_count`).
MAX_REPLICA_COUNT = 3


class Seed(StrEnum):
    """Where a new replica's data comes from."""

    SNAPSHOT = "snapshot"  # a copy-on-write snapshot of its primary's volume
    NETWORK = "network"  # the engine's own copy from the primary's server (pg_basebackup; Redis's full sync)
    BACKUP = "backup"  # a full backup of the primary, taken for it and restored into it (Trove's way)


def choose_seed(wanted: str, snapshot_refusal: str | None, seeds: frozenset[Seed], backups_stored: bool) -> Seed:
    """How a replica is seeded (pure), of the `seeds` its engine takes: `wanted` is the operator's
    `replica_seed` ("auto": a snapshot where the runtime can take one, else the engine's copy over the network,
    else a backup; "backup": a backup wherever the engine takes one). ValueError, in an operator's words, when
    no way is open."""
    backup = Seed.BACKUP in seeds and backups_stored
    if backup and wanted == "backup":
        return Seed.BACKUP
    if snapshot_refusal is None and Seed.SNAPSHOT in seeds:
        return Seed.SNAPSHOT
    if Seed.NETWORK in seeds:
        return Seed.NETWORK
    if backup:
        return Seed.BACKUP
    why = "no backup storage is configured" if Seed.BACKUP in seeds else "the engine takes no seed from a backup"
    raise ValueError(f"the replica cannot be seeded: the source's volume cannot be snapshotted ({snapshot_refusal}), "
                     f"the engine does not copy it over the network, and {why}")

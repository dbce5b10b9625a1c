"""An instance as the control plane records it: what the tenant asked for (spec) and what is (status)."""

from __future__ import annotations

from dataclasses import dataclass, field

from reddwarf.domain.replication import Address, ReplicaHealth, SetPolicy, SyncState
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import Condition, Fault, InstanceStatus, OperatingStatus


@dataclass(frozen=True, slots=True)
class DatabaseSpec:
    name: str
    character_set: str | None = None
    collate: str | None = None


@dataclass(frozen=True, slots=True)
class UserSpec:
    """A tenant user to create; `password` is a Secret so it can never leak through a repr or a log line."""

    name: str
    password: Secret
    host: str = "%"
    databases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """The desired state of an instance. Written by services; read by reconcilers. `restore_backup_id`: the
    backup (the newest of its chain) whose data the instance is created with, instead of an empty server;
    `branch_source_id`: the instance whose data at the create's snapshot it starts with (a branch);
    `branch_snapshot_id`: the snapshot whose data it starts with (a branch of a snapshot);
    `replica_source_id`: the instance it was created as a replica of (seeded from; its role now is its
    replication set's, `domain.replication`)."""

    name: str
    flavor_id: str
    volume_size_gb: int
    datastore: str
    datastore_version: str
    databases: tuple[DatabaseSpec, ...] = ()
    users: tuple[UserSpec, ...] = ()
    availability_zone: str | None = None
    region_name: str | None = None
    restore_backup_id: str | None = None
    branch_source_id: str | None = None
    branch_snapshot_id: str | None = None
    replica_source_id: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where tenants reach an instance: the address and port allocated by the control plane."""

    address: str
    port: int


@dataclass(slots=True)
class Instance:
    """The recorded instance. `status` and friends are written by the reconciler only: `conditions`, and the
    `status`/`operating_status` derived from them when they are written (`domain.conditions`)."""

    id: str
    project_id: str
    spec: InstanceSpec
    status: InstanceStatus
    operating_status: OperatingStatus = OperatingStatus.NONE
    endpoint: Endpoint | None = None
    fault: Fault | None = None
    conditions: tuple[Condition, ...] = ()
    volume_used_bytes: int | None = None
    created: float = 0.0
    updated: float = 0.0
    deleting: bool = False
    generation: int = 0
    # The spec generation the latest status write was based on, and the count of status writes: the version a
    # compare-and-swap of the conditions expects (see `domain.conditions`).
    observed_generation: int = 0
    status_version: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    # The runtime's id of the server: the warm-pool slot the instance was made from, else None (the id).
    workload_id: str | None = None
    # Its role in its replication set as the store records it (`domain.replication`): the primary it
    # replicates from (a replica), or its replicas, oldest first (a primary). Read-only here.
    replica_of: str | None = None
    replicas: tuple[str, ...] = ()
    # A replica's streaming state and lag as the replication watch last recorded it (never computed on read).
    replication_health: ReplicaHealth | None = None
    # When a failover fenced it (None: never, or it has rejoined since).
    fenced: float | None = None
    # Its set's policy and stable endpoints (writer, reader), on every member of a set (None: no set).
    set_policy: SetPolicy | None = None
    set_endpoints: tuple[Address | None, Address | None] = (None, None)
    # Where its set stands in synchronous mode, and since when (None: no set).
    set_sync: tuple[SyncState, float | None] | None = None
    # A primary's replicas that stream now, as the replication watch last saw them (None: no set).
    streaming_replicas: int | None = None

    @property
    def runtime_id(self) -> str:
        return self.workload_id or self.id

"""The persistence rows of the metadata store (SQLAlchemy 2 typed declarative).

Rows are private to `reddwarf.store`: repositories turn them into domain objects and records. Times are UTC
epoch seconds (double precision); ids are uuid4 strings. Any change here needs a new Alembic revision in
`reddwarf/store/migrations/versions/` (a test compares this metadata with the migrated schema).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so that batch migrations (table rebuilds on SQLite) can address them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(36)
REF = String(64)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class InstanceRow(Base):
    __tablename__ = "instances"
    __table_args__ = (Index(None, "project_id", "created", "id"), Index(None, "created", "id"))

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(REF)
    name: Mapped[str] = mapped_column(String(255))
    # The InstanceSpec as JSON, WITHOUT user passwords (those live encrypted in `secrets`).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32))
    operating_status: Mapped[str] = mapped_column(String(32))
    endpoint_address: Mapped[str | None] = mapped_column(String(64))
    endpoint_port: Mapped[int | None] = mapped_column(Integer)
    fault_message: Mapped[str | None] = mapped_column(Text)
    fault_details: Mapped[str | None] = mapped_column(Text)
    fault_created: Mapped[float | None] = mapped_column(Double)
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    volume_used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(Integer)
    # The spec generation the latest status write was based on; the number of status writes, which the
    # conditions' compare-and-swap expects (`repositories.instances.transition`).
    observed_generation: Mapped[int] = mapped_column(Integer, server_default="0")
    status_version: Mapped[int] = mapped_column(Integer, server_default="0")
    deleting: Mapped[bool] = mapped_column(Boolean)
    deleted_at: Mapped[float | None] = mapped_column(Double)
    created: Mapped[float] = mapped_column(Double)
    updated: Mapped[float] = mapped_column(Double)
    # The runtime's id of the instance's server: the warm-pool slot it was claimed from, else None (= id).
    workload_id: Mapped[str | None] = mapped_column(ID, nullable=True)


class PoolSlotRow(Base):
    """A warm-pool slot (see `reddwarf.domain.pool`); deleted when an instance claims it."""

    __tablename__ = "pool_slots"
    __table_args__ = (
        Index("ix_pool_slots_profile", "datastore", "version", "flavor_id", "volume_gb", "state", "created"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    datastore: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    flavor_id: Mapped[str] = mapped_column(REF)
    volume_gb: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text)
    # What the ready slot's server was built from (see `reconcilers.pool.fingerprint`); "" until ready.
    fingerprint: Mapped[str] = mapped_column(String(64), server_default="")
    created: Mapped[float] = mapped_column(Double)
    updated: Mapped[float] = mapped_column(Double)


class StorageReservationRow(Base):
    """Host storage held by one volume (an instance's, a warm-pool slot's; later a branch's or a snapshot's):
    the sum of all rows is what the host's storage must be able to hold (see `repositories.reservations`)."""

    __tablename__ = "storage_reservations"

    holder_id: Mapped[str] = mapped_column(REF, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[float] = mapped_column(Double)


class SecretRow(Base):
    __tablename__ = "secrets"

    owner_id: Mapped[str] = mapped_column(REF, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    created: Mapped[float] = mapped_column(Double)
    updated: Mapped[float] = mapped_column(Double)


class OperationRow(Base):
    __tablename__ = "operations"
    __table_args__ = (Index(None, "state", "not_before"), Index(None, "resource_id", "state"), Index(None, "parent_id"))

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(REF)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires: Mapped[float | None] = mapped_column(Double)
    not_before: Mapped[float] = mapped_column(Double)
    last_error: Mapped[str] = mapped_column(Text)
    created: Mapped[float] = mapped_column(Double)
    updated: Mapped[float] = mapped_column(Double)
    # The operation that enqueued this one as its child (None: a top-level operation).
    parent_id: Mapped[str | None] = mapped_column(String(36))


class OperationStepRow(Base):
    __tablename__ = "operation_steps"

    operation_id: Mapped[str] = mapped_column(ID, ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[str] = mapped_column(String(255), primary_key=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    completed_at: Mapped[float] = mapped_column(Double)


class AddressRow(Base):
    __tablename__ = "addresses"
    # The guarantee that no (address, port) pair is ever handed to two instances.
    __table_args__ = (UniqueConstraint("address", "port"),)

    instance_id: Mapped[str] = mapped_column(ID, primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    created: Mapped[float] = mapped_column(Double)


class ProjectRow(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(REF, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created: Mapped[float] = mapped_column(Double)


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(REF, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    # SHA-256 hex digest of the token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[float | None] = mapped_column(Double)
    revoked: Mapped[bool] = mapped_column(Boolean)
    created: Mapped[float] = mapped_column(Double)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index(None, "resource_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_id: Mapped[str] = mapped_column(REF)
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    created: Mapped[float] = mapped_column(Double)


class RootHistoryRow(Base):
    """Each time root was enabled on an instance, and by whom (Trove's `root_enabled_history`)."""

    __tablename__ = "root_history"
    __table_args__ = (Index(None, "instance_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ID)
    user_id: Mapped[str] = mapped_column(REF)
    enabled_at: Mapped[float] = mapped_column(Double)


metadata = Base.metadata


class LeaseRow(Base):
    """A named, expiring ownership (e.g. `health`: which process observes the instances right now)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(REF)
    expires: Mapped[float] = mapped_column(Double)


class SnapshotRow(Base):
    """A snapshot of an instance's volume (see `reddwarf.domain.snapshot`); soft-deleted like a backup."""

    __tablename__ = "snapshots"
    __table_args__ = (Index(None, "project_id", "created", "id"), Index(None, "instance_id", "created"))

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(REF)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    instance_id: Mapped[str] = mapped_column(ID)
    datastore: Mapped[str] = mapped_column(String(64))
    datastore_version: Mapped[str] = mapped_column(String(64))
    volume_size_gb: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    fault_message: Mapped[str | None] = mapped_column(Text)
    fault_details: Mapped[str | None] = mapped_column(Text)
    fault_created: Mapped[float | None] = mapped_column(Double)
    deleting: Mapped[bool] = mapped_column(Boolean)
    deleted_at: Mapped[float | None] = mapped_column(Double)
    created: Mapped[float] = mapped_column(Double)
    updated: Mapped[float] = mapped_column(Double)


class BackupRow(Base):
    """A backup (see `reddwarf.domain.backup`). Soft-deleted (`deleted_at`) so that a list never shows a
    backup whose artifacts are gone while its id stays unique."""

    __tablename__ = "backups"
    __table_args__ = (
        Index(None, "project_id", "created", "id"),
        Index(None, "instance_id", "created"),
        Index(None, "parent_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(REF)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    instance_id: Mapped[str] = mapped_column(ID)
    parent_id: Mapped[str | None] = mapped_column(ID)
    incremental: Mapped[bool] = mapped_column(Boolean)
    datastore: Mapped[str] = mapped_column(String(64))
    datastore_version: Mapped[str] = mapped_column(String(64))
    datastore_version_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))
    strategy: Mapped[str] = mapped_column(String(64))
    container: Mapped[str] = mapped_column(String(255))
    location: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    raw_bytes: Mapped[int | None] = mapped_column(BigInteger)
    bytes_done: Mapped[int] = mapped_column(BigInteger)
    phase: Mapped[str] = mapped_column(String(32))
    # The engine's metadata (LSNs, GTID) and the storage manifest (chunks, checksums, key id): written once,
    # when the backup completes.
    backup_metadata: Mapped[dict[str, Any]] = mapped_column(JSON)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    fault_message: Mapped[str | None] = mapped_column(Text)
    fault_details: Mapped[str | None] = mapped_column(Text)
    fault_created: Mapped[float | None] = mapped_column(Double)
    deleting: Mapped[bool] = mapped_column(Boolean)
    deleted_at: Mapped[float | None] = mapped_column(Double)
    created: Mapped[float] = mapped_column(Double)
    updated: Mapped[float] = mapped_column(Double)
    verified: Mapped[bool | None] = mapped_column(Boolean)
    verified_at: Mapped[float | None] = mapped_column(Double)
    verification: Mapped[str | None] = mapped_column(Text)
    snapshot_id: Mapped[str | None] = mapped_column(String(36))


class BackupStrategyRow(Base):
    """Trove's backup strategy: a default container (a storage prefix here) for a project, or for one of its
    instances (`instance_id` "" for the project's)."""

    __tablename__ = "backup_strategies"

    project_id: Mapped[str] = mapped_column(REF, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    backend: Mapped[str] = mapped_column(String(32))
    container: Mapped[str] = mapped_column(String(255))
    created: Mapped[float] = mapped_column(Double)


class ArchivedLogRow(Base):
    """A log file an instance's server archived (a PostgreSQL WAL segment), shipped to backup storage by the
    control plane (`workflows/reconcilers/archive.py`); a WAL-based incremental backup and, later,
    point-in-time restore read them back. `manifest` is the storage's (checksums, key id)."""

    __tablename__ = "archived_logs"

    instance_id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    shipped_at: Mapped[float] = mapped_column(Double)


class ReplicationSetRow(Base):
    """A replication set (see `reddwarf.domain.replication`): its primary, and the version every change of
    its roles expects (compare-and-swap)."""

    __tablename__ = "replication_sets"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(REF)
    primary_id: Mapped[str] = mapped_column(ID)
    version: Mapped[int] = mapped_column(Integer)
    created: Mapped[float] = mapped_column(Double)
    updated: Mapped[float] = mapped_column(Double)
    # The tenant's choices (`domain.replication.SetPolicy`).
    mode: Mapped[str] = mapped_column(String(16), default="async")
    auto_failover: Mapped[bool] = mapped_column(Boolean, default=True)
    # The writer endpoint (the founder's address and port) and the reader endpoint (null until allocated).
    writer_address: Mapped[str | None] = mapped_column(String(64))
    writer_port: Mapped[int | None] = mapped_column(Integer)
    reader_address: Mapped[str | None] = mapped_column(String(64))
    reader_port: Mapped[int | None] = mapped_column(Integer)
    # When the set last failed over by itself (no second one within `Settings.failover_quiet`).
    failed_over: Mapped[float | None] = mapped_column(Double)
    # The writer endpoint refuses new connections: its primary is being replaced (from the fence or the
    # switchover's stop until the new primary takes writes).
    writer_held: Mapped[bool] = mapped_column(Boolean, default=False)
    # Synchronous mode: what it does without a replica, where it stands now and since when.
    durability: Mapped[str] = mapped_column(String(16), default="strict")
    sync_state: Mapped[str] = mapped_column(String(16), default="async")
    sync_changed: Mapped[float | None] = mapped_column(Double)


class SetMemberRow(Base):
    """One instance's membership of a replication set: an instance is a member of at most one set."""

    __tablename__ = "set_members"
    __table_args__ = (Index(None, "set_id"),)

    instance_id: Mapped[str] = mapped_column(ID, primary_key=True)
    set_id: Mapped[str] = mapped_column(ID, ForeignKey("replication_sets.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    created: Mapped[float] = mapped_column(Double)
    # A replica's streaming state and lag, as the replication watch last observed them (null: not yet).
    streaming: Mapped[bool | None] = mapped_column(Boolean)
    lag_bytes: Mapped[int | None] = mapped_column(BigInteger)
    lag_seconds: Mapped[float | None] = mapped_column(Double)
    health_detail: Mapped[str | None] = mapped_column(Text)
    observed: Mapped[float | None] = mapped_column(Double)
    # When a failover fenced this member (its processes killed before a replica was promoted in its place):
    # nothing starts its server again until it rejoins as a replica.
    fenced: Mapped[float | None] = mapped_column(Double)

"""Pydantic models of the wire objects the client returns (Trove's v1.0 views) and the requests it sends.

Response models accept fields they do not name (`extra="allow"`) so that a newer server never breaks an
older client, and `wire()` gives back exactly the object the server sent (what `--json` prints).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reddwarf.domain.secret import Secret


class WireModel(BaseModel):
    """A view the server sent; unknown fields are kept, nothing is mutated."""

    # Schemas are built on first use, not at import: a CLI command that reads one kind of object should not
    # pay for all of them at start-up (bench/cli_startup.py).
    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    def wire(self) -> dict[str, Any]:
        """The object as the server sent it (fields it did not send are left out)."""
        return self.model_dump(mode="json", exclude_unset=True)


class Link(WireModel):
    href: str
    rel: str


class Fault(WireModel):
    """What went wrong with the last operation on an instance."""

    message: str
    details: str | None = None
    created: datetime | None = None


class FlavorRef(WireModel):
    id: str
    links: list[Link] = Field(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


class InstanceDatastore(WireModel):
    type: str
    version: str
    version_number: str | None = None


class Volume(WireModel):
    size: int
    used: float | None = None


class Address(WireModel):
    address: str
    type: str
    network: str | None = None


class Access(WireModel):
    is_public: bool = False
    allowed_cidrs: list[str] = Field(default_factory=list)


class SetEndpoint(WireModel):
    """One of a replication set's stable endpoints."""

    address: str
    port: int


class Instance(WireModel):
    """An instance (Trove's summary or detail view; summary lacks created/updated/fault/volume.used)."""

    id: str
    name: str
    status: str
    operating_status: str = ""
    links: list[Link] = Field(default_factory=list)
    flavor: FlavorRef | None = None
    datastore: InstanceDatastore | None = None
    region: str | None = None
    volume: Volume | None = None
    addresses: list[Address] = Field(default_factory=list)
    ip: list[str] = Field(default_factory=list)
    port: int | None = None
    created: datetime | None = None
    updated: datetime | None = None
    fault: Fault | None = None
    access: Access | None = None
    replicas: list[dict[str, Any]] = Field(default_factory=list)
    replica_of: dict[str, Any] | None = None
    tenant_id: str | None = None
    # Extensions: the member's replication state and policy, and its set's stable endpoints.
    replication: dict[str, Any] | None = None
    endpoints: dict[str, SetEndpoint] | None = None

    @property
    def writer(self) -> SetEndpoint | None:
        """The set's writer endpoint (its address never changes), if the instance is a member of a set."""
        return None if self.endpoints is None else self.endpoints.get("writer")

    @property
    def reader(self) -> SetEndpoint | None:
        """The set's reader endpoint (spread over its healthy replicas), once it has one."""
        return None if self.endpoints is None else self.endpoints.get("reader")

    @property
    def replica_ids(self) -> list[str]:
        """The ids of the instance's replicas (a replication source), oldest first."""
        return [str(replica["id"]) for replica in self.replicas if "id" in replica]

    @property
    def source_id(self) -> str | None:
        """The id of the instance this one replicates from (a replica), else None."""
        return None if self.replica_of is None else str(self.replica_of.get("id"))

    @property
    def address(self) -> str | None:
        """The first address tenants reach the instance at, once allocated."""
        if self.addresses:
            return self.addresses[0].address
        return self.ip[0] if self.ip else None

    @property
    def root_password(self) -> Secret | None:
        """The root password of a create's answer when the server enables root on create (Trove's
        `root_on_create`); it is shown once, so every later view has None."""
        value = (self.model_extra or {}).get("password")
        return Secret(value) if isinstance(value, str) and value else None


class InstancePage(BaseModel):
    """One page of `GET /instances`; `next_marker` is set when the server says more exist."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    instances: list[Instance]
    next_marker: str | None = None


class BackupDatastore(WireModel):
    """The datastore version a backup was taken of (and a restore from it gets by default)."""

    type: str
    version: str
    version_id: str | None = None


class BackupProgress(WireModel):
    """Reddwarf's extension of the backup view: bytes of the tool's stream stored so far, and the phase
    (queued, preparing, streaming, finishing, done; deleting while a delete runs)."""

    bytes_done: int = 0
    phase: str = ""


class Backup(WireModel):
    """A backup (Trove's view). `size` and `uncompressed_size` are GB (floats) once it completed; `progress`,
    `uncompressed_size`, `fault` and `verified`, `verified_at`, `verification` (a verification's verdict,
    `REDDWARF_VERIFY_BACKUPS`) and `snapshot_id` (the snapshot it was streamed from) are Reddwarf's extensions
    (None from a plain Trove server)."""

    id: str
    name: str
    status: str
    description: str | None = None
    instance_id: str | None = None
    parent_id: str | None = None
    project_id: str | None = None
    size: float | None = None
    uncompressed_size: float | None = None
    progress: BackupProgress | None = None
    datastore: BackupDatastore | None = None
    locationRef: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    fault: Fault | None = None
    verified: bool | None = None
    verified_at: datetime | None = None
    verification: str | None = None
    snapshot_id: str | None = None


class BackupPage(BaseModel):
    """One page of `GET /backups`; `next_marker` is set when the server says more exist."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    backups: list[Backup]
    next_marker: str | None = None


class DatastoreVersion(WireModel):
    """A datastore version; in a datastore's `versions` list only id, name and links are guaranteed."""

    id: str
    name: str
    links: list[Link] = Field(default_factory=list)
    datastore: str | None = None
    version: str | None = None
    version_number: str | None = None
    active: bool | None = None
    image: str | None = None
    packages: str | list[str] | None = None


class Datastore(WireModel):
    id: str
    name: str
    links: list[Link] = Field(default_factory=list)
    default_version: str | None = None
    versions: list[DatastoreVersion] = Field(default_factory=list)

    @property
    def default_version_name(self) -> str | None:
        """The name ("15") of the default version, resolved from its id."""
        for version in self.versions:
            if version.id == self.default_version:
                return version.name
        return None


class Flavor(WireModel):
    id: str
    name: str
    ram: int
    vcpus: int
    links: list[Link] = Field(default_factory=list)
    str_id: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


class DatabaseRequest(BaseModel):
    """A database to create with an instance, with the character set and collation where the engine has them
    (MariaDB); a plain name is enough otherwise."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    character_set: str | None = None
    collate: str | None = None

    def body(self) -> dict[str, str]:
        """Trove's database object for the create body."""
        return self.model_dump(exclude_none=True)


class UserRequest(BaseModel):
    """A tenant user to create with an instance; the password stays a `Secret` until it is sent."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)

    name: str
    password: Secret
    host: str | None = None
    databases: tuple[str, ...] = ()

    def body(self) -> dict[str, Any]:
        """Trove's user object for the create body (reveals the password: only for the request)."""
        user: dict[str, Any] = {
            "name": self.name,
            "password": self.password.reveal(),
            "databases": [{"name": db} for db in self.databases],
        }
        if self.host is not None:
            user["host"] = self.host
        return user


class SnapshotDatastore(WireModel):
    type: str
    version: str


class Snapshot(WireModel):
    """A snapshot of an instance's volume (Reddwarf's extension: `/instances/{id}/snapshots`)."""

    id: str
    name: str
    status: str
    instance_id: str
    description: str | None = None
    datastore: SnapshotDatastore | None = None
    volume: Volume | None = None
    created: datetime | None = None
    updated: datetime | None = None
    fault: Fault | None = None

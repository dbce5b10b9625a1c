"""Instance request bodies, Trove's schemas (`trove/common/apischema.py`) in pydantic.

The schemas check structure and types only; what a value means (name rules, volume limits, flavor and
datastore existence, fields Reddwarf cannot honour yet) is checked by `services.instances`, so that the
same rules hold for every caller. Unknown keys inside `instance` are refused, as Trove's
`additionalProperties: false`; nested objects tolerate extra keys as Trove's do.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from reddwarf.domain.instance import DatabaseSpec, UserSpec
from reddwarf.domain.replication import Durability, Mode, PolicyChange
from reddwarf.domain.secret import Secret
from reddwarf.services.instances import CreateInstanceRequest


def _flavor_ref(value: Any) -> str:
    """A flavor id as a string or integer, or an href whose last path segment is the id."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a flavor id (string or integer) or a flavor href")
    text = str(value).strip().rstrip("/")
    if not text:
        raise ValueError("must not be empty")
    return text.rsplit("/", 1)[-1]


def _whole_number(value: Any) -> Any:
    """An integer, or a string of digits (Trove's `volume_size` schema); anything else is refused."""
    if isinstance(value, bool) or value is None:
        raise ValueError("must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ValueError("must be an integer")


# Every list a request may carry has a maximum length (a 400 names the field), so that a body within the size
# limit still cannot ask for unbounded work.
MAX_DATABASES = 100
MAX_USERS = 100
MAX_LIST = 32  # lists Reddwarf accepts and ignores, or refuses when non-empty (modules, allowed_cidrs)

FlavorRef = Annotated[str, BeforeValidator(_flavor_ref)]
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class VolumeIn(_Lenient):
    size: WholeNumber | None = None
    type: str | None = Field(default=None, description="Accepted and ignored (no volume types here).")


class DatastoreIn(_Lenient):
    type: str | None = Field(default=None, description="Datastore name or id; default: the default datastore.")
    version: str | None = Field(default=None, description="Version name or id; default: the newest installed.")
    version_number: str | None = None


class DatabaseIn(_Lenient):
    name: str
    character_set: str | None = None
    collate: str | None = None


class DatabaseRef(_Lenient):
    name: str


class UserIn(_Lenient):
    name: str
    password: str
    host: str | None = None
    databases: list[DatabaseRef] = Field(default_factory=list, max_length=MAX_DATABASES)


class RestorePointIn(_Lenient):
    """Trove's `backupRef`, or Reddwarf's `instanceRef` (a branch of a running instance) or `snapshotRef` (a
    branch of a snapshot): exactly one."""

    backupRef: str | None = None
    instanceRef: str | None = None
    snapshotRef: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RestorePointIn:
        if sum(ref is not None for ref in (self.backupRef, self.instanceRef, self.snapshotRef)) != 1:
            raise ValueError("give exactly one of backupRef (a backup), instanceRef (an instance to branch) "
                             "and snapshotRef (a snapshot to branch)")
        return self


class ModuleRef(_Lenient):
    id: str


class AccessIn(_Lenient):
    is_public: bool | None = Field(default=None, description="Accepted and ignored.")
    allowed_cidrs: list[str] = Field(default_factory=list, max_length=MAX_LIST,
                                     description="Not supported yet: must be empty.")


class ReplicationIn(BaseModel):
    """Extension: a replication set's policy (docs/failover.md): its mode, what a synchronous set does when no
    replica can acknowledge (`durability`), and whether it fails over by itself."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mode: Literal["async", "sync"] | None = None
    durability: Literal["strict", "available"] | None = None
    auto_failover: bool | None = None

    def to_change(self) -> PolicyChange:
        return PolicyChange(mode=None if self.mode is None else Mode(self.mode), auto_failover=self.auto_failover,
                            durability=None if self.durability is None else Durability(self.durability))


class InstanceCreate(BaseModel):
    """Trove's whole create schema. Fields that mean nothing here are accepted and ignored
    (availability_zone, region_name, nics, locality, volume.type, access.is_public); fields Reddwarf
    cannot honour yet are refused by name (configuration, non-empty modules, access.allowed_cidrs).
    `flavorRef` is required unless the create is of replicas (`replica_of`), which take their source's."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    flavorRef: FlavorRef | None = None
    volume: VolumeIn | None = None
    datastore: DatastoreIn | None = None
    databases: list[DatabaseIn] = Field(default_factory=list, max_length=MAX_DATABASES)
    users: list[UserIn] = Field(default_factory=list, max_length=MAX_USERS)
    restorePoint: RestorePointIn | None = None
    replica_of: str | None = None
    replica_count: WholeNumber | None = None
    nics: list[dict[str, Any]] = Field(default_factory=list, max_length=1)
    availability_zone: str | None = None
    region_name: str | None = None
    configuration: str | None = None
    modules: list[ModuleRef] = Field(default_factory=list, max_length=MAX_LIST)
    locality: Literal["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"] | None = None
    access: AccessIn | None = None
    replication: ReplicationIn | None = None

    def to_request(self) -> CreateInstanceRequest:
        datastore = self.datastore or DatastoreIn()
        return CreateInstanceRequest(
            name=self.name,
            flavor_ref=self.flavorRef,
            volume_size=self.volume.size if self.volume is not None else None,
            datastore_type=datastore.type,
            datastore_version=datastore.version,
            datastore_version_number=datastore.version_number,
            databases=tuple(
                DatabaseSpec(name=d.name, character_set=d.character_set, collate=d.collate)
                for d in self.databases
            ),
            users=tuple(
                UserSpec(
                    name=u.name,
                    password=Secret(u.password),
                    host=u.host or "%",
                    databases=tuple(d.name for d in u.databases),
                )
                for u in self.users
            ),
            availability_zone=self.availability_zone,
            region_name=self.region_name,
            restore_point=self.restorePoint.backupRef if self.restorePoint is not None else None,
            branch_of=self.restorePoint.instanceRef if self.restorePoint is not None else None,
            branch_snapshot=self.restorePoint.snapshotRef if self.restorePoint is not None else None,
            replica_of=self.replica_of,
            replica_count=self.replica_count,
            datastore_given=self.datastore is not None and bool(self.datastore.model_fields_set),
            locality=self.locality,
            nic_address=any(isinstance(nic, dict) and nic.get("ip_address") for nic in self.nics),
            configuration=self.configuration,
            modules=tuple(m.id for m in self.modules),
            allowed_cidrs=tuple(self.access.allowed_cidrs) if self.access is not None else (),
            replication=None if self.replication is None else self.replication.to_change(),
        )


class InstanceCreateBody(BaseModel):
    instance: InstanceCreate


class InstanceUpdate(BaseModel):
    """Trove's update attributes: `name`, and the detach of a replica (`replica_of` or `slave_of` present, any
    value); the others are refused by name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = None
    configuration: str | None = None
    replica_of: str | None = None
    slave_of: str | None = None
    datastore_version: str | None = None
    access: dict[str, Any] | None = None
    replication: ReplicationIn | None = None

    @property
    def detach(self) -> bool:
        """Trove's detach of a replica: `replica_of` or `slave_of` present, whatever its value ("" or null)."""
        return bool({"replica_of", "slave_of"} & self.model_fields_set)

    def unsupported_fields(self) -> list[str]:
        """Attributes present in the body other than `name` and a detach, in Trove's order."""
        present = self.model_fields_set - {"name", "replica_of", "slave_of", "replication"}
        return [f for f in ("configuration", "datastore_version", "access") if f in present]


class InstanceUpdateBody(BaseModel):
    instance: InstanceUpdate

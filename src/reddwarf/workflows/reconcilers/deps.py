"""What reconcilers need, handed over by `reddwarf.wiring`: the store, the engines, the runtime, the catalogue."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from reddwarf.domain.capacity import storage_limit
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import Instance, InstanceSpec
from reddwarf.domain.replication import ReplicationSet, Topology, slot_name
from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.domain.workload import Placement, Resources, WorkloadSpec
from reddwarf.engines.base import Engine
from reddwarf.runtimes.base import Runtime
from reddwarf.storage.artifact import ArtifactOptions, Keyring
from reddwarf.storage.base import Storage
from reddwarf.store.authority import set_authority, set_credential
from reddwarf.store.database import Database

__all__ = ["ADMIN_SECRET", "BackupFiles", "ReconcilerDeps"]


@dataclass(frozen=True)
class BackupFiles:
    """Where backups are stored and how: the storage target, the artifact options, and the keyring (always
    given where encrypted backups may exist: it reads them; `options.encrypt` says whether new ones are)."""

    storage: Storage
    options: ArtifactOptions
    keyring: Keyring | None = None


@dataclass(frozen=True)
class ReconcilerDeps:
    db: Database
    engines: Mapping[str, Engine]
    runtime: Runtime
    flavors: Mapping[str, Flavor]
    ready_timeout: float = 60.0
    storage_overcommit_ratio: float = 1.0
    backups: BackupFiles | None = None
    # Every completed backup is restored into a throwaway server and checked (`REDDWARF_VERIFY_BACKUPS`).
    verify_backups: bool = False
    # How replicas are seeded (`Settings.replica_seed`).
    replica_seed: str = "auto"

    def storage_limit(self) -> int | None:
        """What all volume reservations together may hold (see `services.capacity`, the same rule)."""
        return storage_limit(self.runtime.storage_capacity(), self.storage_overcommit_ratio)

    def engine(self, instance: Instance) -> Engine:
        return self.engine_for(instance.spec)

    def engine_for(self, spec: InstanceSpec) -> Engine:
        try:
            return self.engines[spec.datastore]
        except KeyError:
            raise PermanentError(f"Datastore {spec.datastore} is not available.") from None

    def version_for(self, spec: InstanceSpec) -> DatastoreVersion:
        for version in self.engine_for(spec).versions():
            if version.name == spec.datastore_version:
                return version
        raise PermanentError(f"Datastore {spec.datastore} version {spec.datastore_version} is not installed.")

    def flavor_for(self, spec: InstanceSpec) -> Flavor:
        try:
            return self.flavors[spec.flavor_id]
        except KeyError:
            raise PermanentError(f"Flavor {spec.flavor_id} no longer exists.") from None

    def resources(self, instance: Instance) -> Resources:
        return self.resources_for(instance.spec)

    def resources_for(self, spec: InstanceSpec) -> Resources:
        flavor = self.flavor_for(spec)
        return Resources(memory_mb=flavor.ram_mb, vcpus=flavor.vcpus, volume_gb=spec.volume_size_gb)

    def placement(self, instance: Instance) -> Placement:
        """Where the instance's server lives: its runtime id is the warm-pool slot it came from, if any."""
        if instance.endpoint is None:
            return self.runtime.placement(instance.runtime_id, "", 0)
        return self.runtime.placement(instance.runtime_id, instance.endpoint.address, instance.endpoint.port)

    def admin_password(self, owner_id: str) -> Secret:
        """The admin password of an instance (or of a warm-pool slot not claimed yet)."""
        with self.db.unit_of_work(write=False) as uow:
            secret = uow.secrets.get(owner_id, ADMIN_SECRET)
        if secret is None:
            raise PermanentError("The instance's admin credential is missing.")
        return secret

    def workload(self, instance: Instance, placement: Placement) -> WorkloadSpec:
        return self.workload_for(instance.spec, instance.id, placement)

    def workload_for(self, spec: InstanceSpec, owner_id: str, placement: Placement) -> WorkloadSpec:
        """The server `spec` asks for at `placement`, with the admin password `owner_id` holds, as a member
        of the replication set `owner_id` belongs to (if any)."""
        return self.workload_with(spec, placement, self.admin_password(owner_id), self.topology(owner_id))

    def workload_with(
        self, spec: InstanceSpec, placement: Placement, admin_password: Secret, topology: Topology | None = None
    ) -> WorkloadSpec:
        return self.engine_for(spec).workload(
            spec, self.version_for(spec), self.flavor_for(spec), placement, admin_password, topology
        )

    def topology(self, owner_id: str) -> Topology | None:
        """`owner_id`'s place in its replication set (None: a single instance, or a warm-pool slot)."""
        with self.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(owner_id)
        return None if found is None else self.topology_of(found, owner_id)

    def fenced(self, owner_id: str) -> float | None:
        """When a failover fenced `owner_id` (None: it is not fenced)."""
        with self.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(owner_id)
        member = None if found is None else found.member(owner_id)
        return None if member is None else member.fenced

    def topology_of(self, found: ReplicationSet, instance_id: str) -> Topology:
        """`instance_id`'s place in `found` as its server needs it: the primary it follows (if it is a replica),
        its slot, and the other members who may replicate from it."""
        with self.db.unit_of_work(write=False) as uow:
            members = {m.instance_id: uow.instances.get(m.instance_id) for m in found.members}
        peers = tuple(self.placement(other) for other_id, other in members.items()
                      if other_id != instance_id and other is not None and other.endpoint is not None)
        upstream = None
        if instance_id != found.primary_id:
            primary = members.get(found.primary_id)
            if primary is None or primary.endpoint is None:
                raise PermanentError(f"The primary {found.primary_id} of instance {instance_id} no longer exists.")
            upstream = self.placement(primary)
        topology = Topology(set_id=found.id, upstream=upstream, slot=slot_name(instance_id), peers=peers,
                            synchronous=found.synchronous_names)
        member = members.get(instance_id)
        replication = None if member is None else self.engine(member).replication(self.version_for(member.spec))
        if member is None or member.endpoint is None or replication is None or not replication.uses_tls():
            return topology
        with self.db.unit_of_work() as uow:
            issued = set_authority(uow, found.id).issue(
                f"reddwarf member {instance_id}", addresses=(self.placement(member).address,), server=True,
                client=True)
            credential = set_credential(uow, found.id)
        return dataclasses.replace(topology, tls=issued, credential=credential)

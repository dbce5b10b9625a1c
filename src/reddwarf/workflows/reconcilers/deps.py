"""What reconcilers need, handed over by `reddwarf.wiring`: the store, the engines, the runtime, the catalogue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import Instance
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement, Resources, WorkloadSpec
from reddwarf.engines.base import Engine
from reddwarf.runtimes.base import Runtime
from reddwarf.store.database import Database

ADMIN_SECRET = "admin"


@dataclass(frozen=True)
class ReconcilerDeps:
    db: Database
    engines: Mapping[str, Engine]
    runtime: Runtime
    flavors: Mapping[str, Flavor]
    ready_timeout: float = 60.0

    def engine(self, instance: Instance) -> Engine:
        try:
            return self.engines[instance.spec.datastore]
        except KeyError:
            raise PermanentError(f"Datastore {instance.spec.datastore} is not available.") from None

    def version(self, instance: Instance) -> DatastoreVersion:
        engine = self.engine(instance)
        for version in engine.versions():
            if version.name == instance.spec.datastore_version:
                return version
        raise PermanentError(
            f"Datastore {instance.spec.datastore} version {instance.spec.datastore_version} is not installed."
        )

    def flavor(self, instance: Instance) -> Flavor:
        try:
            return self.flavors[instance.spec.flavor_id]
        except KeyError:
            raise PermanentError(f"Flavor {instance.spec.flavor_id} no longer exists.") from None

    def resources(self, instance: Instance) -> Resources:
        flavor = self.flavor(instance)
        return Resources(memory_mb=flavor.ram_mb, vcpus=flavor.vcpus, volume_gb=instance.spec.volume_size_gb)

    def placement(self, instance: Instance) -> Placement:
        if instance.endpoint is None:
            return self.runtime.placement(instance.id, "", 0)
        return self.runtime.placement(instance.id, instance.endpoint.address, instance.endpoint.port)

    def admin_password(self, instance_id: str) -> Secret:
        with self.db.unit_of_work(write=False) as uow:
            secret = uow.secrets.get(instance_id, ADMIN_SECRET)
        if secret is None:
            raise PermanentError("The instance's admin credential is missing.")
        return secret

    def workload(self, instance: Instance, placement: Placement) -> WorkloadSpec:
        return self.engine(instance).workload(
            instance.spec, self.version(instance), self.flavor(instance), placement,
            self.admin_password(instance.id),
        )

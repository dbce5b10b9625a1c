"""The Engine protocol: what every datastore implementation owes the control plane.

Obligations of an implementation:

- `versions()` discovers what is installed on this host (cheap; may be cached) and never raises for a
  missing installation: it returns fewer versions.
- `validate_spec()` is pure: it raises `BadRequest` naming the field for anything the engine cannot honour
  (invalid user or database names, reserved names, unsupported character sets).
- `workload()` is pure: the same inputs give the same `WorkloadSpec`. It renders configuration (address,
  port, socket directory, memory from the flavor) and the one-time init commands. Secrets (the admin
  password) go into secret `FileSpec`s, never into argv.
- `probe()` answers over the engine's wire protocol with a short timeout, as `user` (into `dbname` where
  the engine has databases; None means its maintenance database); it returns False (never raises) when
  the server is not ready yet or refuses the credentials.
- `bootstrap()` creates the admin-visible objects of the spec (databases, users, grants). It is idempotent:
  running it twice (e.g. after a worker crash) leaves the same state. Connection failures raise
  `TemporaryError`; refusals the tenant caused raise `PermanentError` with a message a tenant can act on.
"""

from __future__ import annotations

from typing import Protocol

from reddwarf.domain.capabilities import Capabilities
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement, WorkloadSpec


class Engine(Protocol):
    """A datastore implementation (PostgreSQL, MariaDB, Redis)."""

    @property
    def name(self) -> str:
        """The datastore name users type and the registry key (= package name)."""
        ...

    @property
    def default_port(self) -> int: ...

    @property
    def admin_user(self) -> str:
        """The name of the per-instance admin account Reddwarf uses; hidden from tenants."""
        ...

    def capabilities(self, version: DatastoreVersion) -> Capabilities: ...

    def versions(self) -> list[DatastoreVersion]: ...

    def validate_spec(self, spec: InstanceSpec) -> None: ...

    def workload(
        self, spec: InstanceSpec, version: DatastoreVersion, flavor: Flavor, placement: Placement,
        admin_password: Secret,
    ) -> WorkloadSpec: ...

    def probe(
        self, placement: Placement, user: str, password: Secret, timeout: float = 2.0, dbname: str | None = None
    ) -> bool: ...

    def bootstrap(self, spec: InstanceSpec, placement: Placement, admin_password: Secret) -> None: ...

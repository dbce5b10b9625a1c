"""Fake engines: a catalogue with validation rules and no servers (`FakeEngine`), and one whose servers are
in memory so that account operations can run end to end without a database (`AccountsEngine`).

`FakeEngine` answers like PostgreSQL: postgresql 15 and 16 active, 14 inactive (a test may pass its own
versions), "postgres" is a reserved name at create and "root" in the users API. It runs nothing: `workload`,
`bootstrap` and `accounts` raise, `probe` and `ping` say no.

`AccountsEngine` keeps one `ServerState` per instance id. Its `FakeAccounts` follow the `Accounts` contract
(`reddwarf.engines.base`): the admin account is hidden and unreachable by name, writes are idempotent, grants
need the database. Its own naming rules (the "engine's own" ones the API passes through): no `;` in database
or user names, and `!` refused in passwords, to prove that password rules reach the tenant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from reddwarf.domain.accounts import UserInfo
from reddwarf.domain.capabilities import Capabilities, Capability
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import BadRequest, Conflict, NotFound, TemporaryError
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.replication import Topology
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, Placement, Resources, WorkloadSpec
from reddwarf.engines.base import Accounts, Backups, Engine, Snapshots
from tests.fakes.backups import FakeBackups

ADMIN = "reddwarf_admin"
DEFAULT_OFFERED = frozenset({Capability.USERS, Capability.DATABASES})


def postgresql_versions(name: str = "postgresql") -> list[DatastoreVersion]:
    """The default catalogue: 15 and 16 active, 14 installed but inactive."""
    return [
        DatastoreVersion(datastore=name, name="15", number="15.8", bin_dir="/nonexistent/15"),
        DatastoreVersion(datastore=name, name="16", number="16.4", bin_dir="/nonexistent/16"),
        DatastoreVersion(datastore=name, name="14", number="14.13", bin_dir="/nonexistent/14", active=False),
    ]


class FakeEngine:
    """A pure stand-in for an engine: a catalogue and validation rules, no servers."""

    def __init__(
        self,
        name: str = "postgresql",
        versions: list[DatastoreVersion] | None = None,
        offered: frozenset[Capability] = DEFAULT_OFFERED,
    ) -> None:
        self._name = name
        self._versions = versions if versions is not None else postgresql_versions(name)
        self.offered = offered
        self.fake_backups = FakeBackups()

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_port(self) -> int:
        return 5432

    @property
    def extra_port_offsets(self) -> tuple[int, ...]:
        return ()

    @property
    def admin_user(self) -> str:
        return ADMIN

    def capabilities(self, version: DatastoreVersion) -> Capabilities:
        return Capabilities(offered=self.offered)

    def versions(self) -> list[DatastoreVersion]:
        return list(self._versions)

    def validate_spec(self, spec: InstanceSpec) -> None:
        for index, user in enumerate(spec.users):
            if user.name == "postgres":
                raise BadRequest(f"users[{index}].name: postgres is a reserved user name.", f"users[{index}].name")

    def validate_databases(self, databases: Sequence[DatabaseSpec], field: str = "databases") -> None:
        """No rules of its own for databases."""

    def validate_users(self, users: Sequence[UserSpec], field: str = "users") -> None:
        """The users API's rules: `root` belongs to the root API (as on every real engine)."""
        for index, user in enumerate(users):
            if user.name.lower() == "root":
                raise BadRequest(f"The user name {user.name!r} is reserved.", field=f"{field}[{index}].name")

    def workload(
        self, spec: InstanceSpec, version: DatastoreVersion, flavor: Flavor, placement: Placement,
        admin_password: Secret, topology: Topology | None = None,
    ) -> WorkloadSpec:
        raise NotImplementedError("FakeEngine runs no servers")

    def probe(
        self, placement: Placement, user: str, password: Secret, timeout: float = 2.0, dbname: str | None = None
    ) -> bool:
        return False

    def ping(self, placement: Placement, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
        return False

    def bootstrap(self, spec: InstanceSpec, placement: Placement, admin_password: Secret) -> None:
        raise NotImplementedError("FakeEngine runs no servers")

    def accounts(self, placement: Placement, admin_password: Secret) -> Accounts:
        raise NotImplementedError("FakeEngine runs no servers")

    def backups(self, version: DatastoreVersion) -> Backups:
        return self.fake_backups

    def snapshots(self, version: DatastoreVersion) -> Snapshots:
        return FakeSnapshots()

    def replication(self, version: DatastoreVersion) -> None:
        return None


@dataclass
class ServerState:
    """One fake server: databases, users ((name, host) -> password, grants), root."""

    databases: dict[str, DatabaseSpec] = field(default_factory=dict)
    users: dict[tuple[str, str], tuple[Secret, set[str]]] = field(default_factory=dict)
    root_password: Secret | None = None
    admin_password: Secret | None = None
    reachable: bool = True
    calls: list[str] = field(default_factory=list)


class FakeAccounts:
    """`Accounts` on a `ServerState`; refuses to connect (TemporaryError) when the server is unreachable or
    the admin password is not the one the server has."""

    def __init__(self, state: ServerState, admin_password: Secret) -> None:
        self.state = state
        if not state.reachable:
            raise TemporaryError("connection refused")
        if state.admin_password is not None and state.admin_password != admin_password:
            raise TemporaryError("admin refused")

    def list_databases(self) -> list[DatabaseSpec]:
        return list(self.state.databases.values())

    def create_databases(self, databases: Sequence[DatabaseSpec]) -> None:
        self.state.calls.append("create_databases")
        for database in databases:
            self.state.databases.setdefault(database.name, database)

    def delete_database(self, name: str) -> None:
        self.state.calls.append("delete_database")
        self.state.databases.pop(name, None)
        for _password, grants in self.state.users.values():
            grants.discard(name)

    def list_users(self) -> list[UserInfo]:
        return [UserInfo(name, host, tuple(sorted(grants)))
                for (name, host), (_pw, grants) in self.state.users.items() if name != ADMIN]

    def get_user(self, name: str, host: str = "%") -> UserInfo | None:
        found = self.state.users.get((name, host))
        if found is None or name == ADMIN:
            return None
        return UserInfo(name, host, tuple(sorted(found[1])))

    def create_users(self, users: Sequence[UserSpec]) -> None:
        self.state.calls.append("create_users")
        for user in users:
            missing = [d for d in user.databases if d not in self.state.databases]
            if missing:
                raise NotFound("Database", missing[0])
            self.state.users[(user.name, user.host)] = (user.password, set(user.databases))

    def update_user(
        self, name: str, host: str = "%", *, new_name: str | None = None, new_password: Secret | None = None,
        new_host: str | None = None,
    ) -> None:
        self.state.calls.append("update_user")
        if name == ADMIN or (name, host) not in self.state.users:
            raise NotFound("User", f"{name}@{host}")
        password, grants = self.state.users[(name, host)]
        target = (new_name or name, new_host or host)
        if target != (name, host) and target in self.state.users:
            raise Conflict("exists")
        del self.state.users[(name, host)]
        self.state.users[target] = (new_password or password, grants)

    def delete_user(self, name: str, host: str = "%") -> None:
        self.state.calls.append("delete_user")
        if name != ADMIN:
            self.state.users.pop((name, host), None)

    def grant(self, name: str, host: str, databases: Sequence[str]) -> None:
        self.state.calls.append("grant")
        self.state.users[(name, host)][1].update(databases)

    def revoke(self, name: str, host: str, database: str) -> None:
        self.state.calls.append("revoke")
        self.state.users[(name, host)][1].discard(database)

    def root_enabled(self) -> bool:
        return self.state.root_password is not None

    def enable_root(self, password: Secret) -> str:
        self.state.root_password = password
        return "root"

    def disable_root(self) -> None:
        self.state.root_password = None

    def login(self, name: str, password: str, host: str = "%") -> bool:
        """What a tenant's client would see: does this user log in with this password?"""
        found = self.state.users.get((name, host))
        return found is not None and found[0].reveal() == password


class AccountsEngine(FakeEngine):
    """`FakeEngine` with in-memory servers: account operations work, every server answers its ping, and the
    admin logs in while `admin_ok` holds. `offered` decides the capabilities (Redis-like: no DATABASES)."""

    def __init__(
        self,
        name: str = "postgresql",
        offered: frozenset[Capability] = frozenset({Capability.USERS, Capability.DATABASES, Capability.ROOT}),
        versions: list[DatastoreVersion] | None = None,
    ) -> None:
        super().__init__(name, versions, offered)
        self.servers: dict[str, ServerState] = {}
        self.admin_ok = True

    def server(self, instance_id: str) -> ServerState:
        return self.servers.setdefault(instance_id, ServerState())

    def validate_databases(self, databases: Sequence[DatabaseSpec], field: str = "databases") -> None:
        for index, database in enumerate(databases):
            if ";" in database.name:
                raise BadRequest("Database names must not contain ';'.", field=f"{field}[{index}].name")

    def validate_users(self, users: Sequence[UserSpec], field: str = "users") -> None:
        for index, user in enumerate(users):
            if ";" in user.name:
                raise BadRequest("User names must not contain ';'.", field=f"{field}[{index}].name")
            if "!" in user.password.reveal():
                raise BadRequest("Passwords must not contain '!'.", field=f"{field}[{index}].password")

    def accounts(self, placement: Placement, admin_password: Secret) -> FakeAccounts:
        return FakeAccounts(self.server(placement.instance_id), admin_password)

    def workload(
        self, spec: InstanceSpec, version: DatastoreVersion, flavor: Flavor, placement: Placement,
        admin_password: Secret, topology: Topology | None = None,
    ) -> WorkloadSpec:
        """A server that the fake runtime never really runs (its `start` only records the call)."""
        resources = Resources(memory_mb=flavor.ram_mb, vcpus=flavor.vcpus, volume_gb=spec.volume_size_gb)
        return WorkloadSpec(instance_id=placement.instance_id, init=(), server=CommandSpec(("fake-server",)),
                            resources=resources)

    def bootstrap(self, spec: InstanceSpec, placement: Placement, admin_password: Secret) -> None:
        accounts = self.accounts(placement, admin_password)
        accounts.create_databases(spec.databases)
        accounts.create_users(spec.users)

    def probe(
        self, placement: Placement, user: str, password: Secret, timeout: float = 2.0, dbname: str | None = None
    ) -> bool:
        if user == ADMIN:
            return self.admin_ok
        found = self.server(placement.instance_id).users.get((user, "%"))
        return found is not None and found[0] == password

    def ping(self, placement: Placement, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
        return True


# The protocol checks: mypy fails here when a fake drifts from the protocol it stands in for.
_ENGINE: Engine = FakeEngine()
_ACCOUNTS_ENGINE: Engine = AccountsEngine()
_ACCOUNTS: Accounts = FakeAccounts(ServerState(), Secret("admin"))


class FakeSnapshots:
    """Nothing to quiesce, fix or carry."""

    @contextlib.contextmanager
    def quiesced(self, placement: Placement, admin_password: Secret) -> Iterator[None]:
        yield

    def fix_ups(self, placement: Placement) -> tuple[CommandSpec, ...]:
        return ()

    def carried(self) -> tuple[str, ...]:
        return ()


_SNAPSHOTS: Snapshots = FakeSnapshots()

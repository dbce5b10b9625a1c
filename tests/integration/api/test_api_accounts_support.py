"""Helpers for the accounts API tests: a fake engine whose `Accounts` keep state in memory, and an
in-process worker that runs the durable account operations the API records (no database server).

The fake follows the `Accounts` contract: the admin account is hidden and unreachable by name, writes
are idempotent, grants need the database. Its naming rule (the "engine's own" one the API passes through):
no `;` in database or user names; `!` is refused in passwords to prove password rules reach the tenant.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api_support import Api, FakeEngine, build_api, create_body

from reddwarf.domain.accounts import UserInfo
from reddwarf.domain.capabilities import Capabilities, Capability
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import BadRequest, Conflict, NotFound, TemporaryError
from reddwarf.domain.instance import DatabaseSpec, Endpoint, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import InstanceStatus, OperatingStatus
from reddwarf.domain.workload import Placement, ProcessObservation
from reddwarf.workflows.kernel.worker import Worker
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.worker import handlers

ADMIN = "reddwarf_admin"


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

    def update_user(self, name: str, host: str = "%", *, new_name: str | None = None,
                    new_password: Secret | None = None, new_host: str | None = None) -> None:
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
        found = self.state.users.get((name, host))
        return found is not None and found[0].reveal() == password


class AccountsEngine(FakeEngine):
    """The API tests' fake engine, with accounts. `offered` decides the capabilities (Redis-like: no DATABASES)."""

    def __init__(self, name: str = "postgresql", offered: frozenset[Capability] | None = None,
                 versions: list[DatastoreVersion] | None = None) -> None:
        super().__init__(name, versions)
        self.offered = offered if offered is not None else frozenset(
            {Capability.USERS, Capability.DATABASES, Capability.ROOT})
        self.servers: dict[str, ServerState] = {}
        self.admin_ok = True

    def capabilities(self, version: DatastoreVersion) -> Capabilities:
        return Capabilities(offered=self.offered)

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

    def probe(self, placement: Placement, user: str, password: Secret, timeout: float = 2.0,
              dbname: str | None = None) -> bool:
        state = self.server(placement.instance_id)
        if user == ADMIN:
            return self.admin_ok
        found = state.users.get((user, "%"))
        return found is not None and found[0] == password

    def ping(self, placement: Placement, timeout: float = 2.0) -> bool:
        return True


class FakeRuntime:
    name = "fake"

    def observe(self, placement: Placement) -> ProcessObservation:
        return ProcessObservation(running=True, pid=1, volume_used_bytes=1024)

    def watch_exits(self, listener: Callable[[str], None]) -> None:
        """Its servers never exit."""

    def placement(self, instance_id: str, address: str, port: int) -> Placement:
        return Placement(instance_id=instance_id, os_user="nobody", address=address, port=port, data_dir="/x",
                         config_dir="/x", log_dir="/x", run_dir="/x", socket_dir="/x")


@dataclass
class AccountsApi:
    api: Api
    engines: dict[str, AccountsEngine]
    worker: Worker
    deps: ReconcilerDeps

    def drain(self, timeout: float = 20.0) -> None:
        """Run operations until none is pending or running (deadline: `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            busy = self.worker.run_once()
            if not busy and not self.active():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"operations still active after {timeout}s: {self.api.operations()}")
            if not busy:
                time.sleep(0.01)

    def active(self) -> bool:
        return any(state in ("pending", "running") for _kind, state in self.api.operations())

    def active_instance(self, datastore: str = "postgresql", **create: Any) -> str:
        """An instance as the create would leave it: ACTIVE, HEALTHY, with an address."""
        body = create_body(**create)
        if datastore != "postgresql":
            body["instance"]["datastore"] = {"type": datastore}
        response = self.api.post("/instances", body)
        assert response.status_code == 200, response.text
        instance_id = str(response.json()["instance"]["id"])
        with self.api.db.unit_of_work() as uow:
            for op in uow.operations.active_for(instance_id):
                uow.operations.supersede(instance_id, (op.kind,))
            uow.instances.set_endpoint(instance_id, Endpoint("127.0.1.9", 5432))
            uow.instances.set_status(instance_id, InstanceStatus.ACTIVE, OperatingStatus.HEALTHY)
        return instance_id


def build_accounts_api(tmp_path: Path, template: Path, **settings: Any) -> Iterator[AccountsApi]:
    engines = {"postgresql": AccountsEngine(), "redis": AccountsEngine(
        "redis", frozenset({Capability.USERS, Capability.ROOT}),
        [DatastoreVersion(datastore="redis", name="7.0", number="7.0.15", bin_dir="/nonexistent")])}
    runtime = FakeRuntime()
    # The tests run the worker by hand (`drain`): a write must not wait for it to be applied.
    settings.setdefault("account_write_wait", 0.0)
    for api in build_api(tmp_path, template=template, engines=engines, **settings):
        ctx = dataclasses.replace(
            api.ctx, placement_for=lambda i: runtime.placement(i.id, i.endpoint.address, i.endpoint.port))
        api.client.app.state.reddwarf = ctx  # type: ignore[attr-defined]
        api.ctx = ctx
        deps = ReconcilerDeps(db=api.db, engines=engines, runtime=runtime,  # type: ignore[arg-type]
                              flavors=ctx.flavors)
        worker = Worker(api.db, handlers(deps), lease_ttl=30, poll_interval=0.01, deadline=900)
        yield AccountsApi(api, engines, worker, deps)

"""The conformance suite's fixtures: one real Reddwarf server (API + workers) for the whole suite on the
private address pool 127.0.93.0/24, and one shared instance per engine version, created through the API.

Every test is parametrised over `targets.discover()` (each required and installed engine version, per
runtime) and tagged `@pytest.mark.capability(NAME)`. A capability test whose target does not declare the
capability is skipped (recorded as untested). A required engine version that is not installed skips its
tests on a developer's machine and FAILS them in CI (`CI` set).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from reddwarf.client import Instance as View
from reddwarf.client import ReddwarfAPIError, ReddwarfClient, ReddwarfClientError, UserRequest
from reddwarf.domain.secret import Secret
from tests.contract import host
from tests.contract.targets import Target, discover
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses, running_plane
from tests.support.skips import not_applicable

ADDRESS_POOL = "127.0.93.0/24"
LIFECYCLE = "lifecycle"
TARGETS = discover()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/contract/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.slow)
            if item.get_closest_marker("capability") is None:
                raise pytest.UsageError(f"{item.nodeid}: every conformance test needs @pytest.mark.capability")


@pytest.fixture(scope="session")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("contract", ADDRESS_POOL, REDDWARF_EMBEDDED_WORKERS="2") as procs:
        yield procs


@pytest.fixture(scope="session", params=TARGETS, ids=[t.id for t in TARGETS])
def target(request: pytest.FixtureRequest) -> Target:
    found: Target = request.param
    if found.installed is None:
        message = (f"{found.engine} {found.version} is not installed "
                   f"(`reddwarf engines install {found.engine}@{found.version}`)")
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the conformance suite on every engine version")
        pytest.skip(message)
    return found


@pytest.fixture(autouse=True)
def _only_declared(request: pytest.FixtureRequest, target: Target) -> None:
    marker = request.node.get_closest_marker("capability")
    name = str(marker.args[0]) if marker else LIFECYCLE
    if name != LIFECYCLE and not target.declares(name):
        not_applicable(f"{target.engine} {target.version} does not declare {name}")


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    database: str | None
    denied: str | None = None  # a database this user must not reach


@dataclass
class Instance:
    """An instance created for the suite and what the tenant knows about it (`client`: the tenant's typed
    client)."""

    id: str
    client: ReddwarfClient
    accounts: tuple[Account, ...]
    databases: tuple[str, ...]

    def view(self) -> View:
        return self.client.get_instance(self.id)

    def wait_active(self) -> View:
        return self.client.wait_for_instance(self.id, timeout=ACTIVE_TIMEOUT)

    def endpoint(self) -> tuple[str, int]:
        view = self.view()
        assert view.address is not None and view.port is not None, f"instance {self.id} has no endpoint yet"
        return view.address, view.port

    def server_pid(self) -> int | None:
        return host.listener_pid(*self.endpoint())


def accounts_for(target: Target) -> tuple[tuple[Account, ...], tuple[str, ...]]:
    """The users and databases an instance of `target` is created with: as much as it declares."""
    if target.declares("users") and target.declares("databases"):
        return (Account("alice", "correct horse 'one'", "app", denied="other"),
                Account("bob", "battery staple", "other", denied="app")), ("app", "other")
    if target.declares("users"):
        return (Account("alice", "correct horse 'one'", None),), ()
    return (), ()


def create_instance(client: ReddwarfClient, target: Target, name: str) -> Instance:
    accounts, databases = accounts_for(target)
    users = [UserRequest(name=a.user, password=Secret(a.password), databases=(a.database,) if a.database else ())
             for a in accounts]
    created = client.create_instance(name, "1", 1, datastore=target.engine, version=target.version,
                                     databases=databases, users=users)
    assert created.status == "BUILD"
    return Instance(created.id, client, accounts, databases)


def delete_instance(instance: Instance) -> None:
    try:
        instance.client.delete_instance(instance.id)
    except ReddwarfAPIError as exc:
        if exc.status != 404:
            raise
    instance.client.wait_for_delete(instance.id, timeout=DELETE_TIMEOUT)


@dataclass
class Pair:
    """Two instances created at once (the workers build them in parallel): one shared by the tests that
    do not destroy it, one spare for the test that deletes it."""

    shared: Instance
    spare: Instance


@pytest.fixture(scope="session")
def pair(reddwarf: ReddwarfProcesses, target: Target) -> Iterator[Pair]:
    with reddwarf.tenant() as client:
        tag = f"{target.engine}-{target.version}".replace(".", "-")
        created = Pair(create_instance(client, target, f"contract-{tag}"),
                       create_instance(client, target, f"contract-{tag}-spare"))
        try:
            yield created
        finally:
            delete_instance(created.spare)
            delete_instance(created.shared)


@pytest.fixture
def shared(pair: Pair, reddwarf: ReddwarfProcesses) -> Instance:
    """The target's shared instance, ACTIVE (the server log tail explains a failure)."""
    try:
        pair.shared.wait_active()
    except ReddwarfClientError as exc:
        raise AssertionError(f"{exc}\n{reddwarf.log_tail()}") from None
    return pair.shared

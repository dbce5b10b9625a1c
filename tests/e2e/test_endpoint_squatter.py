"""Another local user grabs a tenant's address the moment its server dies: Reddwarf sends it nothing and
never reports the instance ACTIVE against it; once the address is free again the instance comes back.

The squatter (tests/support/squatter.py) runs as an unprivileged user of its own, keeps trying to bind the
instance's (address, port) and, once it holds it, asks every client for its password in clear text.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from reddwarf.client import Instance, ReddwarfClient, UserRequest
from reddwarf.domain.secret import Secret
from tests.support.engine_harness import OsUser, throwaway_os_user
from tests.support.server import (
    ACTIVE_TIMEOUT,
    DELETE_TIMEOUT,
    ReddwarfProcesses,
    processes_of,
    signal_processes,
    wait_for,
)
from tests.support.squatter import start_squatter

TENANT_PASSWORD = "squat-tenant-pa55"
ENGINES = {
    "postgresql": ("15", True),
    "mariadb": ("10.11", True),
    "redis": ("7.0", False),
}


@pytest.fixture(scope="module")
def squatter_user() -> Iterator[OsUser]:
    with throwaway_os_user() as user:
        yield user


def _create(client: ReddwarfClient, name: str, datastore: str) -> Instance:
    version, has_databases = ENGINES[datastore]
    databases = ("app",) if has_databases else ()
    alice = UserRequest(name="alice", password=Secret(TENANT_PASSWORD), databases=databases)
    return client.create_instance(name, "1", 1, datastore=datastore, version=version, databases=databases,
                                  users=[alice])


def _bind_failures(reddwarf: ReddwarfProcesses, instance_id: str) -> int:
    """How often the instance's server failed to start because its address was taken (every engine logs
    the kernel's "Address already in use")."""
    count = 0
    for path in reddwarf.state_dir.rglob("*"):
        if instance_id in str(path) and path.parent.name == "log" and path.is_file():
            count += path.read_text(errors="replace").count("Address already in use")
    return count


@pytest.mark.parametrize("datastore", sorted(ENGINES))
def test_a_squatter_on_a_dead_servers_address_gets_nothing_and_the_instance_is_not_active(
    reddwarf: ReddwarfProcesses, unique_name: str, squatter_user: OsUser, datastore: str
) -> None:
    with reddwarf.tenant() as client:
        instance = _create(client, unique_name, datastore)
        view = client.wait_for_instance(instance.id, timeout=ACTIVE_TIMEOUT)
        address, port = view.address, view.port
        assert address is not None and port is not None
        os_user = reddwarf.os_user(instance.id)
        squatter = start_squatter(squatter_user, datastore, tcp=(address, port), bind_for=60)
        seen: list[tuple[str, str]] = []
        try:
            signal_processes(processes_of(os_user), signal.SIGKILL)  # the server dies; its port is free for anyone
            squatter.wait_listening(30)

            def observe() -> tuple[str, str]:
                current = client.get_instance(instance.id)
                seen.append((current.status, current.operating_status))
                return seen[-1]

            wait_for(lambda: observe()[0] == "SHUTDOWN", 60, "the health sweep to see the server gone")
            start = len(seen)
            # Two restarts that found the address taken: each would have probed whatever listens there.
            wait_for(lambda: observe() and _bind_failures(reddwarf, instance.id) >= 2, 120,
                     "two restarts to fail on the squatted address")
            assert all(status != "ACTIVE" and operating != "HEALTHY" for status, operating in seen[start:]), seen
        finally:
            squatter.stop()
        assert squatter.received == b"", "a credential or a login reached the squatter"
        # The address is free again: the next repair brings the instance back.
        client.wait_for_instance(instance.id, timeout=180)
        client.delete_instance(instance.id)
        client.wait_for_delete(instance.id, timeout=DELETE_TIMEOUT)

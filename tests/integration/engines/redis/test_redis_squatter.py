"""Another local user squats a Redis instance's address or socket: no credential ever reaches it.

The squatter (tests/support/squatter.py) runs as an unprivileged user of its own and answers "+OK" to
everything: Redis's AUTH always carries the password in clear text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis_harness import OsUser, Server, running_server
from tests.support.engine_harness import throwaway_os_user
from tests.support.squatter import credentialed_calls, owned_dir, secrets_in, start_squatter

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.instance import InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.redis import RedisEngine

pytestmark = pytest.mark.slow

SOCKET_FILE = "redis.sock"
ALICE = UserSpec("alice", Secret("alice-squat-pass"))
SPEC = InstanceSpec(
    name="squat", flavor_id="1", volume_size_gb=1, datastore="redis", datastore_version="7.0",
    users=(ALICE,),
)


@pytest.fixture(scope="module")
def squatter_user() -> Iterator[OsUser]:
    with throwaway_os_user() as user:
        yield user


@pytest.fixture(scope="module")
def server(engine: RedisEngine, redis70: DatastoreVersion, os_user: OsUser, module_scratch: Path) -> Iterator[Server]:
    with running_server(engine, redis70, os_user, module_scratch / "main", SPEC) as running:
        engine.bootstrap(SPEC, running.placement, running.admin_password)
        yield running


@pytest.fixture
def stopped(server: Server) -> Iterator[Server]:
    """The server, stopped for the test (its address and port free for anyone), started again after."""
    server.stop()
    yield server
    server.start()
    server.wait_ready()


def test_the_running_server_answers_the_login_free_ping(server: Server) -> None:
    assert server.engine.ping(server.placement)


def test_a_squatter_on_a_stopped_servers_endpoint_gets_no_credential_and_no_ping_passes(
    stopped: Server, squatter_user: OsUser, caplog: pytest.LogCaptureFixture
) -> None:
    placement = stopped.placement
    squatter = start_squatter(squatter_user, "redis", tcp=(placement.address, placement.port))
    try:
        squatter.wait_listening(10)
        credentialed_calls(stopped.engine, placement, stopped.admin_password, SPEC, ALICE)
        assert secrets_in(squatter.received, stopped.admin_password, ALICE.password) == []
        with caplog.at_level(logging.WARNING, logger="reddwarf.engines.peer"):
            assert not stopped.engine.ping(placement)
        squatter.wait_connections(1)  # the ping did connect, and found the listener foreign
    finally:
        squatter.stop()
    assert squatter.received == b""  # not even a PING
    assert f"belongs to uid {squatter_user.uid}" in caplog.text


def test_a_socket_served_by_another_user_is_refused_before_any_credential(
    server: Server, squatter_user: OsUser, module_scratch: Path
) -> None:
    planted = owned_dir(str(module_scratch / "planted"), squatter_user)
    placement = replace(server.placement, socket_dir=planted)
    squatter = start_squatter(squatter_user, "redis", unix=f"{planted}/{SOCKET_FILE}")
    try:
        squatter.wait_listening(10)
        credentialed_calls(server.engine, placement, server.admin_password, SPEC, ALICE)
        squatter.wait_connections(1)  # the engine went to the socket, and left before speaking
    finally:
        squatter.stop()
    assert squatter.received == b""

"""The Redis engine's live accounts (ACL users, root) against real redis-server 7.0 processes.

Each test gets its own server (start to ready takes milliseconds). Every claim is checked the way a
tenant would: by logging in (or failing to) with the password and running commands; what must survive a
restart is checked after a SIGKILL, which skips any save at shutdown.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_harness import OsUser, Server, client, running_server, wait_for

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import BadRequest, CapabilityMissing, Conflict, NotFound
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.redis import RedisEngine
from reddwarf.engines.redis.accounts import RedisAccounts
from reddwarf.engines.redis.config import ACL_FILE

SPEC = InstanceSpec(name="acc", flavor_id="1", volume_size_gb=1, datastore="redis", datastore_version="7.0")
WEIRD_USER = 'o\'brien"q";\\x✓'
WEIRD_PASSWORD = "pa'ss\"; ACL DELUSER x -- \\ ✓ é with spaces"


@pytest.fixture
def server(engine: RedisEngine, redis70: DatastoreVersion, os_user: OsUser, scratch_root: Path) -> Iterator[Server]:
    with running_server(engine, redis70, os_user, scratch_root, SPEC) as running:
        yield running


@pytest.fixture
def accounts(server: Server) -> RedisAccounts:
    return server.engine.accounts(server.placement, server.admin_password)


def can_log_in(server: Server, user: str, password: Secret) -> bool:
    return server.engine.probe(server.placement, user, password)


def login(server: Server, user: str, password: Secret) -> redis.Redis:
    return client(server.placement, user, password.reveal())


def on_disk(server: Server) -> str:
    return (Path(server.placement.config_dir) / ACL_FILE).read_text()


def test_users_are_created_listed_log_in_and_survive_a_restart(server: Server, accounts: RedisAccounts) -> None:
    users = [UserSpec("alice", Secret("alice-pa55")), UserSpec(WEIRD_USER, Secret(WEIRD_PASSWORD))]
    server.engine.validate_users(users)
    accounts.create_users(users)
    accounts.create_users(users)  # idempotent
    listed = accounts.list_users()
    assert {user.name for user in listed} == {"alice", WEIRD_USER}  # no default, no admin
    assert accounts.get_user(WEIRD_USER) in listed
    assert all(user.host == "%" and user.databases == () for user in listed)
    assert accounts.get_user("alice", "10.0.0.1") is None
    server.restart(signal.SIGKILL)  # ACL SAVE ran: the users are in the ACL file, not only in memory
    for user in users:
        assert can_log_in(server, user.name, user.password)
        assert not can_log_in(server, user.name, Secret("wrong"))
    tenant = login(server, WEIRD_USER, Secret(WEIRD_PASSWORD))
    try:
        assert tenant.set("k", "v") and tenant.get("k") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError):
            tenant.config_get("dir")  # tenants get no dangerous command
    finally:
        tenant.close()


def test_rename_keeps_the_password_and_rules(server: Server, accounts: RedisAccounts) -> None:
    first = Secret("first-pass ✓")
    accounts.create_users([UserSpec("carol", first)])
    accounts.update_user("carol", new_name="caroline")
    accounts.update_user("carol", new_name="caroline")  # a re-run after a crash: already done
    assert accounts.get_user("carol") is None and accounts.get_user("caroline") is not None
    server.restart(signal.SIGKILL)
    assert not can_log_in(server, "carol", first)
    renamed = login(server, "caroline", first)
    try:
        assert renamed.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            renamed.config_get("dir")
    finally:
        renamed.close()

    accounts.update_user("caroline", new_name=WEIRD_USER, new_password=Secret(WEIRD_PASSWORD))
    assert can_log_in(server, WEIRD_USER, Secret(WEIRD_PASSWORD))
    assert not can_log_in(server, WEIRD_USER, first)
    accounts.create_users([UserSpec("dan", Secret("dan-pass"))])
    with pytest.raises(Conflict):
        accounts.update_user("dan", new_name=WEIRD_USER)
    with pytest.raises(NotFound):
        accounts.update_user("nobody", new_name="somebody")
    with pytest.raises(BadRequest) as caught:
        accounts.update_user("dan", new_host="10.0.0.1")
    assert caught.value.field == "user.host"
    with pytest.raises(BadRequest) as caught:
        accounts.update_user("dan", new_name="has space")
    assert caught.value.field == "user.name"


def test_a_new_password_replaces_the_old(server: Server, accounts: RedisAccounts) -> None:
    old, new = Secret("old-pass"), Secret(WEIRD_PASSWORD)
    accounts.create_users([UserSpec("erin", old)])
    accounts.update_user("erin", new_password=new)
    accounts.update_user("erin", new_password=new)
    server.restart(signal.SIGKILL)
    assert can_log_in(server, "erin", new)
    assert not can_log_in(server, "erin", old)


def test_delete_user_disconnects_it_and_is_idempotent(server: Server, accounts: RedisAccounts) -> None:
    frank = UserSpec("frank", Secret("frank-pass"))
    accounts.create_users([frank])
    held = login(server, "frank", frank.password)
    try:
        assert held.ping()
        accounts.delete_user("frank")
        accounts.delete_user("frank")
        wait_for(lambda: not _alive(held), 5.0, "frank's connection to be closed")
    finally:
        held.close()
    assert accounts.get_user("frank") is None
    server.restart(signal.SIGKILL)
    assert not can_log_in(server, "frank", frank.password)


def test_databases_and_grants_are_not_supported(server: Server, accounts: RedisAccounts) -> None:
    accounts.create_users([UserSpec("gina", Secret("gina-pass"))])
    for call in (
        accounts.list_databases,
        lambda: accounts.create_databases([DatabaseSpec("app")]),
        lambda: accounts.delete_database("app"),
        lambda: accounts.grant("gina", "%", ["app"]),
        lambda: accounts.revoke("gina", "%", "app"),
        lambda: accounts.create_users([UserSpec("hal", Secret("pw"), databases=("app",))]),
    ):
        with pytest.raises(CapabilityMissing) as caught:
            call()
        assert "redis" in caught.value.message and "databases" in caught.value.message
    with pytest.raises(BadRequest) as refused:
        server.engine.validate_databases([DatabaseSpec("app")], field="databases")
    assert refused.value.field == "databases" and "redis does not support databases" in refused.value.message
    server.engine.validate_databases([])


def test_the_admin_default_and_root_are_invisible(server: Server, accounts: RedisAccounts) -> None:
    admin = server.engine.admin_user
    for name in (admin, "default", "root"):
        assert accounts.get_user(name) is None
        for call in (
            lambda name=name: accounts.update_user(name, new_password=Secret("x")),
            lambda name=name: accounts.delete_user(name),
        ):
            with pytest.raises(NotFound):
                call()
        with pytest.raises(BadRequest) as caught:
            server.engine.validate_users([UserSpec(name, Secret("pw"))])
        assert caught.value.field == "users[0].name"
        with pytest.raises(BadRequest):
            accounts.create_users([UserSpec(name, Secret("pw"))])
    assert can_log_in(server, admin, server.admin_password)
    for users, field in (
        ([UserSpec("ok", Secret("pw"), host="10.0.0.1")], "users[0].host"),
        ([UserSpec("ok", Secret(""))], "users[0].password"),
        ([UserSpec("ok", Secret("pw")), UserSpec("has space", Secret("pw"))], "users[1].name"),
        ([UserSpec("ok", Secret("pw"), databases=("app",))], "users[0].databases"),
    ):
        with pytest.raises(BadRequest) as caught:
            server.engine.validate_users(users)
        assert caught.value.field == field


def test_root_enable_gives_every_command_and_disable_takes_it_away(server: Server, accounts: RedisAccounts) -> None:
    assert not accounts.root_enabled()
    accounts.disable_root()  # nothing to disable: no error
    password = Secret("r00t-" + WEIRD_PASSWORD)
    assert accounts.enable_root(password) == "root"
    assert accounts.root_enabled()
    assert "root" not in {user.name for user in accounts.list_users()}
    server.restart(signal.SIGKILL)
    root = login(server, "root", password)
    try:
        assert root.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}  # a dangerous command
        assert root.acl_whoami() == "root"
        again = Secret("another-root-pass")
        assert accounts.enable_root(again) == "root"  # a reset: the new password only
        assert not can_log_in(server, "root", password) and can_log_in(server, "root", again)
        accounts.disable_root()
        wait_for(lambda: not _alive(root), 5.0, "root's connection to be closed")
    finally:
        root.close()
    assert not accounts.root_enabled()
    server.restart(signal.SIGKILL)
    assert not can_log_in(server, "root", again)


def _alive(conn: redis.Redis) -> bool:
    try:
        return bool(conn.ping())
    except (redis.ConnectionError, redis.AuthenticationError):
        return False


def test_no_password_reaches_the_log_or_the_acl_file(server: Server, accounts: RedisAccounts) -> None:
    passwords = [Secret("h1dden-pass"), Secret(WEIRD_PASSWORD), Secret("root-h1dden")]
    accounts.create_users([UserSpec("ivy", passwords[0])])
    accounts.update_user("ivy", new_name="ivo", new_password=passwords[1])
    accounts.enable_root(passwords[2])
    assert not can_log_in(server, "ivo", Secret("wrong"))
    texts = [server.log_text(), on_disk(server)]
    assert "user ivo " in texts[1] and "user root " in texts[1]
    for text in texts:
        for password in [*passwords, server.admin_password]:
            assert password.reveal() not in text

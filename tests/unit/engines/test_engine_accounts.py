"""The accounts parts of the three engines that need no server: validation of the accounts API's users and
databases, ACL-list parsing, grant patterns, and refusals that happen before any connection is made.

The accounts objects below point at a closed port: a test that passes proves the method answered without
trying to connect (a connection attempt would raise `TemporaryError`).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reddwarf.domain.errors import BadRequest, CapabilityMissing, NotFound
from reddwarf.domain.instance import DatabaseSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines.base import Accounts, Engine
from reddwarf.engines.mariadb import MariadbEngine
from reddwarf.engines.mariadb.accounts import _escaped, _literal
from reddwarf.engines.postgresql import PostgresqlEngine
from reddwarf.engines.redis import RedisEngine
from reddwarf.engines.redis.accounts import parse_acl_list, split_rules

NOWHERE = Placement(
    instance_id="i",
    os_user="nobody",
    address="127.0.0.1",
    port=1,  # nothing listens on port 1
    data_dir="/nonexistent/data",
    config_dir="/nonexistent/config",
    log_dir="/nonexistent/log",
    run_dir="/nonexistent/run",
    socket_dir="/nonexistent/s", scratch_dir="/nonexistent/s-tmp",
)
ENGINES: list[Engine] = [PostgresqlEngine(), MariadbEngine(), RedisEngine()]


def _accounts(engine: Engine) -> Accounts:
    return engine.accounts(NOWHERE, Secret("admin-pass"))


def _field_of(call: Callable[[], None]) -> str | None:
    with pytest.raises(BadRequest) as caught:
        call()
    return caught.value.field


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_the_admin_is_never_reached(engine: Engine) -> None:
    accounts = _accounts(engine)
    admin = engine.admin_user
    host = "%"
    assert accounts.get_user(admin, host) is None
    for call in (
        lambda: accounts.update_user(admin, host, new_password=Secret("x")),
        lambda: accounts.delete_user(admin, host),
        lambda: accounts.update_user("root", host, new_name="x"),
        lambda: accounts.delete_user("root", host),
    ):
        with pytest.raises(NotFound):
            call()
    for name in (admin, "root"):
        assert _field_of(lambda name=name: engine.validate_users([UserSpec(name, Secret("pw"))])) == "users[0].name"


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_validation_prefixes_the_given_field(engine: Engine) -> None:
    users = [UserSpec("fine", Secret("pw")), UserSpec("fine", Secret(""))]
    assert _field_of(lambda: engine.validate_users(users, field="body.users")) == "body.users[1].password"
    engine.validate_users([UserSpec('o\'brien;\\"x"', Secret("pa'ss; \\ ✓"))])


@pytest.mark.parametrize("engine", [PostgresqlEngine(), MariadbEngine()], ids=lambda e: e.name)
def test_sql_engines_validate_databases_and_users_databases(engine: Engine) -> None:
    engine.validate_databases([DatabaseSpec("app"), DatabaseSpec("данные ✓"), DatabaseSpec("we'ird; --")])
    assert _field_of(lambda: engine.validate_databases([DatabaseSpec("app"), DatabaseSpec("app")])) == (
        "databases[1].name"
    )
    assert _field_of(lambda: engine.validate_databases([DatabaseSpec("")], field="x")) == "x[0].name"
    assert _field_of(lambda: engine.validate_databases([DatabaseSpec("app", "klingon")])) == (
        "databases[0].character_set"
    )
    # The accounts API's users may name any valid database (whether it exists is the server's answer).
    engine.validate_users([UserSpec("u", Secret("pw"), databases=("somewhere",))])
    twice = [UserSpec("u", Secret("pw"), databases=("a", "a"))]
    assert _field_of(lambda: engine.validate_users(twice)) == "users[0].databases"


def test_postgresql_users_have_no_host() -> None:
    engine = PostgresqlEngine()
    elsewhere = [UserSpec("u", Secret("pw"), host="10.0.0.1")]
    assert _field_of(lambda: engine.validate_users(elsewhere)) == "users[0].host"
    accounts = _accounts(engine)
    assert accounts.get_user("u", "10.0.0.1") is None
    with pytest.raises(NotFound):
        accounts.delete_user("u", "10.0.0.1")
    with pytest.raises(NotFound):
        accounts.delete_database("template1")


def test_mariadb_users_have_hosts() -> None:
    engine = MariadbEngine()
    engine.validate_users([UserSpec("u", Secret("pw"), host="10.0.%"), UserSpec("u", Secret("pw"), host="%")])
    assert _field_of(lambda: engine.validate_users([UserSpec("u", Secret("pw"), host="db.example.com")])) == (
        "users[0].host"
    )
    with pytest.raises(NotFound):
        _accounts(engine).delete_database("mysql")


def test_redis_refuses_databases_and_grants_before_connecting() -> None:
    engine = RedisEngine()
    accounts = engine.accounts(NOWHERE, Secret("admin-pass"), version="7.0")
    for call in (
        accounts.list_databases,
        lambda: accounts.create_databases([DatabaseSpec("app")]),
        lambda: accounts.delete_database("app"),
        lambda: accounts.grant("u", "%", ["app"]),
        lambda: accounts.revoke("u", "%", "app"),
    ):
        with pytest.raises(CapabilityMissing) as caught:
            call()
        assert caught.value.message == "Datastore redis version 7.0 does not support databases."
    assert _field_of(lambda: engine.validate_databases([DatabaseSpec("app")])) == "databases"
    engine.validate_databases([])
    assert _field_of(lambda: engine.validate_users([UserSpec("a b", Secret("pw"))])) == "users[0].name"
    assert _field_of(lambda: engine.validate_users([UserSpec("default", Secret("pw"))])) == "users[0].name"


def test_redis_acl_list_lines_are_split_into_rules() -> None:
    lines = [
        "user alice on sanitize-payload #abc ~* resetchannels &* +@all -@dangerous",
        "user bob off nopass (~app:* +get) (%R~ro:* +@read) ~x",
        "user default off resetchannels -@all",
    ]
    parsed = parse_acl_list(lines)
    assert parsed["alice"] == ["on", "sanitize-payload", "#abc", "~*", "resetchannels", "&*", "+@all", "-@dangerous"]
    assert parsed["bob"] == ["off", "nopass", "(~app:* +get)", "(%R~ro:* +@read)", "~x"]
    assert parsed["default"] == ["off", "resetchannels", "-@all"]
    assert split_rules("  on   ~* ") == ["on", "~*"]


def test_mariadb_grant_patterns_round_trip() -> None:
    for name in ("app_1", "50%off", "plain", "данные ✓"):  # validation refuses `\\` in MariaDB names
        assert _literal(_escaped(name)) == name
    assert _literal("app_1") is None  # an unescaped wildcard names many databases, not one
    assert _literal("app%") is None

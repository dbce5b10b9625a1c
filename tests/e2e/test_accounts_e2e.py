"""python-troveclient's `databases`, `users` and `root` managers against real servers, proven by real logins."""

from __future__ import annotations

from typing import Any

import psycopg
import pymysql
import pytest
import redis

from tests.e2e.test_instance_lifecycle import create, wait_gone, wait_status
from tests.e2e.test_trove_clients import trove
from tests.support.server import ReddwarfProcesses, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(params=["postgresql", "mariadb"])
def sql_instance(request: pytest.FixtureRequest, reddwarf: ReddwarfProcesses, unique_name: str) -> Any:
    datastore = request.param
    version = {"postgresql": "15", "mariadb": "10.11"}[datastore]
    with reddwarf.client() as client:
        instance = create(client, unique_name, datastore={"type": datastore, "version": version})
        view = wait_status(client, instance["id"], "ACTIVE", timeout=180)
        yield datastore, view
        client.delete(f"/instances/{view['id']}")
        wait_gone(client, view["id"])


def login(datastore: str, view: dict[str, Any], user: str, password: str, database: str | None = None) -> Any:
    host, port = view["addresses"][0]["address"], view["port"]
    if datastore == "postgresql":
        return psycopg.connect(host=host, port=port, user=user, password=password, dbname=database or "postgres",
                               connect_timeout=5)
    # PyMySQL encodes a str password as latin-1; MariaDB's own client (and every UTF-8 terminal) sends the
    # UTF-8 bytes, which is what the account's hash was made from.
    return pymysql.connect(host=host, port=port, user=user, password=password.encode(), database=database,
                           connect_timeout=5)


def can_login(datastore: str, view: dict[str, Any], user: str, password: str, database: str | None = None) -> bool:
    try:
        login(datastore, view, user, password, database).close()
    except (psycopg.OperationalError, pymysql.err.OperationalError):
        return False
    return True


def test_databases_users_grants_and_root_with_troveclient(reddwarf: ReddwarfProcesses, sql_instance: Any) -> None:
    datastore, view = sql_instance
    tc = trove(reddwarf)
    iid = view["id"]

    tc.databases.create(iid, [{"name": "app"}, {"name": "other"}])
    wait_for(lambda: {"app", "other"} <= {d.name for d in tc.databases.list(iid)}, 60, "the databases")

    tc.users.create(iid, [{"name": "alice", "password": "pa'ss;\"w\\ørd", "databases": [{"name": "app"}]}])
    wait_for(lambda: "alice" in [u.name for u in tc.users.list(iid)], 60, "alice")
    assert can_login(datastore, view, "alice", "pa'ss;\"w\\ørd", "app")
    assert not can_login(datastore, view, "alice", "wrong", "app")
    assert [d.name for d in tc.users.list_access(iid, "alice")] == ["app"]
    assert all(u.name != "reddwarf_admin" and not u.name.startswith("reddwarf") for u in tc.users.list(iid))

    tc.users.grant(iid, "alice", ["other"])
    wait_for(lambda: {d.name for d in tc.users.list_access(iid, "alice")} == {"app", "other"}, 60, "the grant")
    tc.users.revoke(iid, "alice", "other")
    wait_for(lambda: [d.name for d in tc.users.list_access(iid, "alice")] == ["app"], 60, "the revoke")

    tc.users.change_passwords(iid, [{"name": "alice", "password": "second"}])
    wait_for(lambda: can_login(datastore, view, "alice", "second", "app"), 60, "the new password")
    assert not can_login(datastore, view, "alice", "pa'ss;\"w\\ørd", "app")

    tc.users.update_attributes(iid, "alice", {"name": "alicia"})
    wait_for(lambda: "alicia" in [u.name for u in tc.users.list(iid)], 60, "the rename")
    assert can_login(datastore, view, "alicia", "second", "app")

    assert not tc.root.is_root_enabled(iid).rootEnabled
    name, password = tc.root.create(iid)
    assert tc.root.is_root_enabled(iid).rootEnabled
    assert can_login(datastore, view, name, password)
    tc.root.delete(iid)
    assert not can_login(datastore, view, name, password)

    tc.users.delete(iid, "alicia")
    wait_for(lambda: "alicia" not in [u.name for u in tc.users.list(iid)], 60, "the drop of alicia")
    assert not can_login(datastore, view, "alicia", "second", "app")
    tc.databases.delete(iid, "other")
    wait_for(lambda: "other" not in [d.name for d in tc.databases.list(iid)], 60, "the drop of other")


def test_redis_users_and_root_without_databases(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    from troveclient import exceptions

    tc = trove(reddwarf)
    with reddwarf.client() as client:
        instance = create(client, unique_name, datastore={"type": "redis", "version": "7.0"})
        view = wait_status(client, instance["id"], "ACTIVE", timeout=120)
        iid = view["id"]
        try:
            with pytest.raises(exceptions.BadRequest, match="not supported by redis"):
                tc.databases.create(iid, [{"name": "app"}])
            tc.users.create(iid, [{"name": "bob", "password": "s3cr'et"}])
            wait_for(lambda: "bob" in [u.name for u in tc.users.list(iid)], 60, "bob")
            conn = redis.Redis(host=view["addresses"][0]["address"], port=view["port"], username="bob",
                               password="s3cr'et", socket_timeout=5)
            assert conn.ping()
            name, password = tc.root.create(iid)
            assert redis.Redis(host=view["addresses"][0]["address"], port=view["port"], username=name,
                               password=password, socket_timeout=5).ping()
        finally:
            client.delete(f"/instances/{iid}")
            wait_gone(client, iid)

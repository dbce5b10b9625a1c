"""python-troveclient's `databases`, `users` and `root` managers against real servers, proven by real logins.

The account calls go through troveclient on purpose (its wire compatibility is what is tested); the
instances they run on are created, awaited and deleted with Reddwarf's typed client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pymysql
import pytest
import redis

from reddwarf.client import Instance
from tests.e2e.test_trove_clients import trove
from tests.support.server import DELETE_TIMEOUT, ReddwarfProcesses, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(params=["postgresql", "mariadb"])
def sql_instance(
    request: pytest.FixtureRequest, reddwarf: ReddwarfProcesses, unique_name: str
) -> Iterator[tuple[str, Instance]]:
    datastore = request.param
    version = {"postgresql": "15", "mariadb": "10.11"}[datastore]
    with reddwarf.tenant() as client:
        created = client.create_instance(unique_name, "1", 1, datastore=datastore, version=version)
        view = client.wait_for_instance(created.id, timeout=180)
        yield datastore, view
        client.delete_instance(view.id)
        client.wait_for_delete(view.id, timeout=DELETE_TIMEOUT)


def login(datastore: str, view: Instance, user: str, password: str, database: str | None = None) -> Any:
    host, port = view.address, view.port
    if datastore == "postgresql":
        return psycopg.connect(host=host, port=port, user=user, password=password, dbname=database or "postgres",
                               connect_timeout=5)
    # PyMySQL encodes a str password as latin-1; MariaDB's own client (and every UTF-8 terminal) sends the
    # UTF-8 bytes, which is what the account's hash was made from.
    return pymysql.connect(host=host, port=port, user=user, password=password.encode(), database=database,
                           connect_timeout=5)


def can_login(datastore: str, view: Instance, user: str, password: str, database: str | None = None) -> bool:
    try:
        login(datastore, view, user, password, database).close()
    except (psycopg.OperationalError, pymysql.err.OperationalError):
        return False
    return True


def test_databases_users_grants_and_root_with_troveclient(
    reddwarf: ReddwarfProcesses, sql_instance: tuple[str, Instance]
) -> None:
    datastore, view = sql_instance
    tc = trove(reddwarf)
    iid = view.id

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
    with reddwarf.tenant() as client:
        created = client.create_instance(unique_name, "1", 1, datastore="redis", version="7.0")
        view = client.wait_for_instance(created.id, timeout=120)
        iid = view.id
        try:
            with pytest.raises(exceptions.BadRequest, match="not supported by redis"):
                tc.databases.create(iid, [{"name": "app"}])
            tc.users.create(iid, [{"name": "bob", "password": "s3cr'et"}])
            wait_for(lambda: "bob" in [u.name for u in tc.users.list(iid)], 60, "bob")
            conn = redis.Redis(host=view.address, port=view.port, username="bob", password="s3cr'et",
                               socket_timeout=5)
            assert conn.ping()
            name, password = tc.root.create(iid)
            assert redis.Redis(host=view.address, port=view.port, username=name, password=password,
                               socket_timeout=5).ping()
        finally:
            client.delete_instance(iid)
            client.wait_for_delete(iid, timeout=DELETE_TIMEOUT)

"""MariaDB and Redis through the whole house: API -> worker -> a real server a tenant can use."""

from __future__ import annotations

import pymysql
import pytest
import redis

from reddwarf.client import DatabaseRequest, ReddwarfAPIError, UserRequest
from reddwarf.domain.secret import Secret
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses


def test_mariadb_instance(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        created = client.create_instance(
            unique_name, "1", 1, datastore="mariadb", version="10.11",
            databases=[DatabaseRequest(name="shop", character_set="utf8mb4", collate="utf8mb4_unicode_ci")],
            users=[UserRequest(name="dora", password=Secret("s3cret'pw"), databases=("shop",))],
        )
        view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        assert view.operating_status == "HEALTHY"
        assert view.port == 3306
        conn = pymysql.connect(host=view.address, port=3306, user="dora",
                               password="s3cret'pw", database="shop", connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("create table t (i int)")
                cur.execute("insert into t values (7)")
                cur.execute("select i from t")
                assert cur.fetchone() == (7,)
                cur.execute("select @@character_set_database, @@collation_database")
                assert cur.fetchone() == ("utf8mb4", "utf8mb4_unicode_ci")
        finally:
            conn.close()
        with pytest.raises(pymysql.err.OperationalError):
            pymysql.connect(host=view.address, port=3306, user="root", password="", connect_timeout=5)
        client.delete_instance(view.id)
        client.wait_for_delete(view.id, timeout=DELETE_TIMEOUT)


def test_redis_instance(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        created = client.create_instance(unique_name, "1", 1, datastore="redis", version="7.0",
                                         users=[UserRequest(name="eve", password=Secret("kv-pass"))])
        view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        assert view.port == 6379
        r = redis.Redis(host=view.address, port=6379, username="eve", password="kv-pass", socket_timeout=5)
        try:
            r.set("k", "v")
            assert r.get("k") == b"v"
            with pytest.raises(redis.exceptions.NoPermissionError):
                r.config_get("*")
        finally:
            r.close()
        anonymous = redis.Redis(host=view.address, port=6379, socket_timeout=5)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        client.delete_instance(view.id)
        client.wait_for_delete(view.id, timeout=DELETE_TIMEOUT)


def test_redis_refuses_databases(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        before = len(client.list_instances(all=True))
        with pytest.raises(ReddwarfAPIError) as refused:
            client.create_instance(unique_name, "1", 1, datastore="redis", version="7.0", databases=["x"])
        assert (refused.value.status, refused.value.fault_name) == (400, "badRequest")
        assert "databases" in refused.value.message
        assert len(client.list_instances(all=True)) == before

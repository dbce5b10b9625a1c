"""MariaDB and Redis through the whole house: API -> worker -> a real server a tenant can use."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest
import redis

from tests.e2e.test_instance_lifecycle import create, wait_gone, wait_status
from tests.support.server import ReddwarfProcesses


def test_mariadb_instance(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.client() as client:
        instance = create(
            client, unique_name, datastore={"type": "mariadb", "version": "10.11"},
            databases=[{"name": "shop", "character_set": "utf8mb4", "collate": "utf8mb4_unicode_ci"}],
            users=[{"name": "dora", "password": "s3cret'pw", "databases": [{"name": "shop"}]}],
        )
        view = wait_status(client, instance["id"], "ACTIVE")
        assert view["operating_status"] == "HEALTHY"
        assert view["port"] == 3306
        conn = pymysql.connect(host=view["addresses"][0]["address"], port=3306, user="dora",
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
            pymysql.connect(host=view["addresses"][0]["address"], port=3306, user="root", password="",
                            connect_timeout=5)
        client.delete(f"/instances/{instance['id']}")
        wait_gone(client, instance["id"])


def test_redis_instance(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.client() as client:
        instance = create(client, unique_name, datastore={"type": "redis", "version": "7.0"},
                          users=[{"name": "eve", "password": "kv-pass"}])
        view = wait_status(client, instance["id"], "ACTIVE")
        assert view["port"] == 6379
        r = redis.Redis(host=view["addresses"][0]["address"], port=6379, username="eve", password="kv-pass",
                        socket_timeout=5)
        try:
            r.set("k", "v")
            assert r.get("k") == b"v"
            with pytest.raises(redis.exceptions.NoPermissionError):
                r.config_get("*")
        finally:
            r.close()
        anonymous = redis.Redis(host=view["addresses"][0]["address"], port=6379, socket_timeout=5)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        client.delete(f"/instances/{instance['id']}")
        wait_gone(client, instance["id"])


def test_redis_refuses_databases(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.client() as client:
        before = len(client.get("/instances").json()["instances"])
        response = client.post("/instances", json={"instance": {
            "name": unique_name, "flavorRef": "1", "volume": {"size": 1},
            "datastore": {"type": "redis", "version": "7.0"}, "databases": [{"name": "x"}],
        }})
        assert response.status_code == 400
        body: dict[str, Any] = response.json()
        assert "databases" in body["badRequest"]["message"]
        assert len(client.get("/instances").json()["instances"]) == before

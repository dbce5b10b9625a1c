"""Per-engine client adapters: a tenant connecting with the engine's own client library.

`use()` logs in, writes something and reads it back, and raises `Refused` when the server refuses the
credentials or the database (anything else, e.g. a server that does not answer, propagates as the
library's own error, so a dead server is never mistaken for a refusal).
"""

from __future__ import annotations

import secrets
from typing import Protocol

import psycopg
import pymysql
import redis

CONNECT_TIMEOUT = 5


class Refused(Exception):
    """The server refused the login or the database."""


class ClientAdapter(Protocol):
    def use(self, address: str, port: int, user: str, password: str, database: str | None) -> None: ...


class PostgresqlClient:
    REFUSALS = ("password authentication failed", "permission denied for database", "does not exist",
                "not permitted to log in")

    def use(self, address: str, port: int, user: str, password: str, database: str | None) -> None:
        try:
            conn = psycopg.connect(host=address, port=port, user=user, password=password,
                                   dbname=database or "postgres", connect_timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as exc:
            if any(text in str(exc) for text in self.REFUSALS):
                raise Refused(str(exc)) from None
            raise
        table = "t_" + secrets.token_hex(4)
        with conn:
            conn.execute(f"create table {table} (v text)")
            conn.execute(f"insert into {table} values (%s)", (table,))
            assert conn.execute(f"select v from {table}").fetchone() == (table,)
            conn.execute(f"drop table {table}")


class MariadbClient:
    # ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_ACCOUNT_HAS_BEEN_LOCKED
    ACCESS_DENIED = {1044, 1045, 4151}

    def use(self, address: str, port: int, user: str, password: str, database: str | None) -> None:
        try:
            conn = pymysql.connect(host=address, port=port, user=user, password=password, database=database,
                                   connect_timeout=CONNECT_TIMEOUT)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in self.ACCESS_DENIED:
                raise Refused(str(exc)) from None
            raise
        table = "t_" + secrets.token_hex(4)
        try:
            with conn.cursor() as cur:
                if database is None:  # no database to write in: a query is all a login proves
                    cur.execute("select 1")
                    assert cur.fetchone() == (1,)
                    return
                cur.execute(f"create table {table} (v varchar(32))")
                cur.execute(f"insert into {table} values (%s)", (table,))
                cur.execute(f"select v from {table}")
                assert cur.fetchone() == (table,)
                cur.execute(f"drop table {table}")
            conn.commit()
        finally:
            conn.close()


class RedisClient:
    def use(self, address: str, port: int, user: str, password: str, database: str | None) -> None:
        assert database is None, "Redis has no named databases"
        client = redis.Redis(host=address, port=port, username=user, password=password,
                             socket_timeout=CONNECT_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT)
        try:
            key = "k_" + secrets.token_hex(4)
            try:
                client.set(key, key)
            except redis.exceptions.AuthenticationError as exc:
                raise Refused(str(exc)) from None
            assert client.get(key) == key.encode()
            client.delete(key)
        finally:
            client.close()


ADAPTERS: dict[str, ClientAdapter] = {
    "postgresql": PostgresqlClient(),
    "mariadb": MariadbClient(),
    "redis": RedisClient(),
}

"""Per-engine escapes a tenant's root tries through its own client: each returns the attempts the server
did NOT refuse (an empty list is the managed-service root of docs/root-privileges.md).

Only refusals for lack of privilege count as refused; anything else (a server that does not answer) is an
error of the test, never mistaken for a refusal.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pymysql
import redis

ADMIN = "reddwarf_admin"
TIMEOUT = 5
_MARIADB_DENIED = {1044, 1045, 1142, 1227, 1238}


def postgresql(address: str, port: int, user: str, password: str) -> list[str]:
    attempts = (
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "SELECT pg_read_file('/etc/hostname')",
        "ALTER SYSTEM SET listen_addresses = '*'",
        f"ALTER ROLE {ADMIN} NOLOGIN",
        f"DROP ROLE {ADMIN}",
        "GRANT pg_execute_server_program TO CURRENT_USER",
    )
    allowed = []
    with psycopg.connect(
        host=address,
        port=port,
        user=user,
        password=password,
        dbname="postgres",
        connect_timeout=TIMEOUT,
        autocommit=True,
    ) as conn:
        for statement in attempts:
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                continue
            allowed.append(statement)
    return allowed


def mariadb(address: str, port: int, user: str, password: str) -> list[str]:
    attempts = (
        "SELECT count(*) FROM mysql.global_priv",
        "INSTALL SONAME 'ha_blackhole'",
        "SET GLOBAL general_log_file = '/tmp/reddwarf-contract.log'",
        f"DROP USER `{ADMIN}`@`localhost`",
        "SET GLOBAL port = 3399",
    )
    allowed = []
    conn = pymysql.connect(
        host=address, port=port, user=user, password=password, connect_timeout=TIMEOUT, autocommit=True
    )
    try:
        for statement in attempts:
            try:
                with conn.cursor() as cursor:
                    cursor.execute(statement)
            except pymysql.err.MySQLError as exc:
                if exc.args and exc.args[0] in _MARIADB_DENIED:
                    continue
                raise
            allowed.append(statement)
    finally:
        conn.close()
    return allowed


def redis_(address: str, port: int, user: str, password: str) -> list[str]:
    attempts: tuple[tuple[str, ...], ...] = (
        ("CONFIG", "SET", "dir", "/tmp"),
        ("CONFIG", "SET", "port", "6390"),
        ("ACL", "SETUSER", ADMIN, "off"),
        ("REPLICAOF", "127.0.0.1", "6390"),
        ("SHUTDOWN", "NOSAVE"),
    )
    allowed = []
    client = redis.Redis(
        host=address,
        port=port,
        username=user,
        password=password,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
    )
    try:
        for command in attempts:
            try:
                client.execute_command(*command)
            except redis.exceptions.NoPermissionError:
                continue
            allowed.append(" ".join(command))
    finally:
        client.close()
    return allowed


ESCAPES: dict[str, Callable[[str, int, str, str], list[str]]] = {
    "postgresql": postgresql,
    "mariadb": mariadb,
    "redis": redis_,
}

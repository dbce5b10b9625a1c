"""Commands spoken to a running Redis server: readiness probe and bootstrap of ACL users.

This module and `accounts.py` (which builds on it) are the only ones of the engine that use redis-py.
Connections that authenticate go over the instance's own unix socket only, its server checked (`SO_PEERCRED`)
to run as the instance's OS user before AUTH is sent (`PeerCheckedConnection`); the tenant endpoint over TCP
is only pinged, without a credential (`ping`, see `reddwarf.engines.peer`). Connections authenticate as a
named ACL user, carry connect and read timeouts, and are never retried by redis-py itself: the durable worker owns
retries. A tenant's password reaches the server only as its SHA-256 hash in an `ACL SETUSER` rule, so it never
crosses the wire nor reaches a log.

Errors: a connection that fails (refused, timed out, authentication refused, server still loading)
raises `TemporaryError`; an `ACL SETUSER` Redis refuses because of the tenant's input raises
`PermanentError` with Redis's message (the password hash masked); a failing `ACL SAVE` (disk full, file
not writable) raises `TemporaryError`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.instance import InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines import peer
from reddwarf.engines.redis import config

logger = logging.getLogger(__name__)

_MASK = "**********"


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom to connect: the instance's own unix socket, whose server must run as `os_user`;
    never TCP."""

    socket: str
    os_user: str
    user: str
    password: Secret
    timeout: float = 5.0


def target(placement: Placement, user: str, password: Secret, timeout: float = 5.0) -> Target:
    return Target(str(PurePosixPath(placement.socket_dir) / config.SOCKET_FILE), placement.os_user, user, password,
                  timeout)


class PeerCheckedConnection(redis.UnixDomainSocketConnection):
    """A unix-socket connection that checks its peer (`SO_PEERCRED`) before redis-py sends AUTH: the socket
    must be served by the instance's OS user (`expected_uid`), else the connection fails with nothing sent."""

    def __init__(self, *, expected_uid: int, **kwargs: object) -> None:
        init = cast(Callable[..., None], super().__init__)  # redis-py leaves it untyped
        init(**kwargs)
        self.expected_uid = expected_uid

    def _connect(self) -> socket.socket:
        connect = cast(Callable[[], socket.socket], super()._connect)
        sock = connect()
        try:
            peer.require_unix_peer(sock, self.expected_uid)
        except BaseException:
            sock.close()
            raise
        return sock


def _client(where: Target) -> redis.Redis:
    pool = redis.ConnectionPool(
        connection_class=PeerCheckedConnection,
        expected_uid=peer.uid_of(where.os_user),
        path=where.socket,
        username=where.user,
        password=where.password.reveal(),
        socket_timeout=where.timeout,
        socket_connect_timeout=where.timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
        decode_responses=False,
        # No CLIENT SETINFO: one round trip less per connection, and redis-py would read its own package
        # metadata (~6 ms) for every client it builds.
        driver_info=None,
    )
    return redis.Redis(connection_pool=pool)


def probe(where: Target) -> bool:
    """True when AUTH as `where.user` and PING answer over the instance's unix socket; False on any failure
    (never raises)."""
    try:
        client = _client(where)
    except OSError as exc:  # no such OS user: the instance is gone or not made yet
        logger.debug("redis probe of %s: %s", where.socket, exc)
        return False
    try:
        return client.ping() is True
    except (redis.RedisError, OSError) as exc:
        logger.debug("redis probe of %s not ready: %s", where.socket, type(exc).__name__)
        return False
    finally:
        _close(client)


def _close(client: redis.Redis) -> None:
    client.close()
    client.connection_pool.disconnect()  # the client does not close a pool it was handed


_PING = b"*1\r\n$4\r\nPING\r\n"
# A server that answers PING, or asks for AUTH first (its `default` user is off), accepts connections;
# "-LOADING" (still reading its dataset) and anything else does not yet.
_ALIVE = (b"+PONG", b"-NOAUTH")
_FULL = b"-ERR max number of clients reached"


def ping(placement: Placement, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
    """True when the tenant endpoint (TCP to the placement's address and port) is a Redis server of the
    instance's OS user that accepts connections; never raises, never sends a credential.

    The listener's owner is checked first (`peer.connect_tcp_owned`); then an unauthenticated PING.
    `busy_is_alive`: "max number of clients reached" counts as an answer too (anyone can fill its slots; the
    failover watch must not take that for a dead primary)."""
    try:
        uid = peer.uid_of(placement.os_user)
        with peer.connect_tcp_owned(placement.address, placement.port, uid, timeout) as sock:
            sock.sendall(_PING)
            with sock.makefile("rb") as reader:
                answer = reader.readline(256)
    except OSError as exc:
        logger.debug("redis ping of %s:%s: %s", placement.address, placement.port, exc)
        return False
    alive = answer.startswith(_ALIVE) or (busy_is_alive and answer.startswith(_FULL))
    if not alive:
        logger.debug("redis ping of %s:%s answered %r", placement.address, placement.port, answer[:40])
    return alive


@contextmanager
def session(where: Target) -> Iterator[redis.Redis]:
    """An authenticated connection: `TemporaryError` when it cannot be had (the server may come up)."""
    try:
        client = _client(where)
    except OSError as exc:  # no such OS user: the instance is gone or not made yet
        raise TemporaryError(f"cannot connect to Redis at {where.socket}: {exc}", delay=2.0) from exc
    try:
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise TemporaryError(
                f"cannot connect to Redis at {where.socket} as {where.user}: {exc}", delay=2.0
            ) from exc
        except redis.RedisError as exc:  # e.g. NOPERM: the admin account itself is wrong
            raise PermanentError(
                f"Redis at {where.socket} refused {where.user}: {exc}", details=type(exc).__name__
            ) from exc
        yield client
    finally:
        _close(client)


class CommandClient(Protocol):
    """What the raw commands below need of a connection: redis-py's `execute_command` (a `redis.Redis`, or
    a unit test's double, which mypy then checks against this)."""

    def execute_command(self, *args: Any, **options: Any) -> Any: ...


def command(client: CommandClient, *args: str) -> object:
    """Run one raw command (redis-py leaves `execute_command` untyped)."""
    execute = cast(Callable[..., object], client.execute_command)
    return execute(*args)


def text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def as_dict(reply: object) -> dict[str, object]:
    """ACL GETUSER's flat [name, value, ...] reply as a dict (values left as redis-py decoded them)."""
    if not isinstance(reply, list) or len(reply) % 2:
        return {}
    return {text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}


def user_matches(reply: object, password_sha256: str, commands: tuple[str, ...]) -> bool:
    """True when an ACL GETUSER reply describes exactly what `config.user_rules` would set (pure)."""
    if reply is None:
        return False
    found = as_dict(reply)
    flags = found.get("flags")
    passwords = found.get("passwords")
    if not isinstance(flags, list) or not isinstance(passwords, list):
        return False
    return (
        {text(flag) for flag in flags} == {"on", "sanitize-payload"}
        and [text(p) for p in passwords] == [password_sha256]
        and text(found.get("commands", "")) == " ".join(commands)
        and text(found.get("keys", "")) == config.ALL_KEYS_AND_CHANNELS[0]
        and text(found.get("channels", "")) == config.ALL_KEYS_AND_CHANNELS[1]
        and found.get("selectors") == []
    )


def masked(message: str, password_sha256: str) -> str:
    return message.replace(password_sha256, _MASK)


def retryable(exc: redis.RedisError) -> bool:
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError)


def ensure_user(client: CommandClient, user: UserSpec) -> bool:
    """Make ACL user `user` on, with this password and the tenant rights; True when something changed."""
    digest = config.password_hash(user.password.reveal())
    try:
        current = command(client, "ACL", "GETUSER", user.name)
        if user_matches(current, digest, config.TENANT_COMMANDS):
            return False
        command(client, "ACL", "SETUSER", user.name, *config.user_rules(digest, config.TENANT_COMMANDS))
    except redis.RedisError as exc:
        message = masked(str(exc), digest)
        if retryable(exc):
            raise TemporaryError(f"Redis could not set up user {user.name!r} for now: {message}") from None
        raise PermanentError(f"Redis refused to create user {user.name!r}: {message}") from None
    logger.info("set up redis ACL user %r", user.name)
    return True


def save_acl(client: CommandClient) -> None:
    """Write the server's ACL users to its aclfile (so they survive a restart), `default` as it must be
    (`config.DEFAULT_USER_RULES`: servers made before that rule get it with their next save)."""
    try:
        command(client, "ACL", "SETUSER", config.DEFAULT_USER, "reset", *config.DEFAULT_USER_RULES)
        command(client, "ACL", "SAVE")
    except redis.RedisError as exc:
        raise TemporaryError(f"Redis could not save its ACL file: {exc}", delay=5.0) from exc


def bootstrap(spec: InstanceSpec, where: Target) -> None:
    """Make the spec's users ACL users and persist them with ACL SAVE; idempotent.

    One round trip after the login: every `ACL SETUSER` (each starts with `reset`, so it sets the user to
    exactly the spec whatever it was) and the `ACL SAVE` go in one pipeline. SAVE runs even when nothing
    changed: a worker may have died between an earlier SETUSER and its SAVE, and the file it writes is
    the same.
    """
    digests = {user.name: config.password_hash(user.password.reveal()) for user in spec.users}
    # Connects even without users: a server that is gone fails here, with a temporary error (a create that
    # took a warm-pool server relies on it: its first attempt skips `start`).
    with session(where) as client:
        pipe = client.pipeline(transaction=False)
        queue = cast(Callable[..., object], pipe.execute_command)  # redis-py leaves it untyped
        for user in spec.users:
            queue("ACL", "SETUSER", user.name, *config.user_rules(digests[user.name], config.TENANT_COMMANDS))
        queue("ACL", "SETUSER", config.DEFAULT_USER, "reset", *config.DEFAULT_USER_RULES)
        queue("ACL", "SAVE")
        try:
            replies = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise TemporaryError(f"Redis at {where.socket} went away during bootstrap: {exc}") from exc
    for user, reply in zip(spec.users, replies, strict=False):
        if isinstance(reply, redis.RedisError):  # an error reply: Redis refused this user's rules
            message = masked(str(reply), digests[user.name])
            raise PermanentError(f"Redis refused to create user {user.name!r}: {message}")
    for reply in replies[len(spec.users):]:
        if isinstance(reply, redis.RedisError):
            raise TemporaryError(f"Redis could not save its ACL file: {reply}", delay=5.0)
    logger.info("redis ACL users %s set up and saved", [user.name for user in spec.users])

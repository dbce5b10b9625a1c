"""`RedisAccounts`: live ACL users and root on one running Redis server.

The `reddwarf.engines.base.Accounts` implementation. Every call opens its own short-lived connection as
Reddwarf's admin (`admin.session`), and every write ends with `ACL SAVE`, so that the users survive a
restart. Passwords reach Redis only as SHA-256 hashes in `#<hash>` rules, never in plain text.

The model:

- Users are ACL users with the tenant rights of `config.TENANT_COMMANDS` on every key and channel; their
  host is always `%`.
- Redis has no named databases, so there is nothing to grant: every database method, `grant` and `revoke`
  raise `CapabilityMissing` (the API answers 400), before any connection is made.
- Redis has no rename: a new name is a new ACL user with the old one's exact rules (read from `ACL LIST`),
  created and the old one deleted in one MULTI/EXEC transaction, so no client ever sees both or neither.
- Root is an ACL user `root` with the managed-service root's commands (`config.ROOT_COMMANDS`: every
  tenant command plus FLUSHALL, KEYS, INFO, CONFIG GET, BGSAVE and the like; never ACL, CONFIG SET, MODULE,
  DEBUG, REPLICAOF, FAILOVER, SHUTDOWN, MIGRATE, MONITOR or CLIENT KILL) on every key and channel; the
  operator setting `root_superuser` gives every command. Disabling root deletes it (`ACL DELUSER`, which
  also disconnects its clients).
- `default` (kept off), Reddwarf's admin and `root` are invisible: listings skip them and every method
  given one answers as if it did not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import redis

from reddwarf.domain.accounts import UserInfo
from reddwarf.domain.errors import BadRequest, CapabilityMissing, Conflict, NotFound, PermanentError, TemporaryError
from reddwarf.domain.instance import DatabaseSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.redis import admin, config, validation
from reddwarf.engines.redis.admin import Target, command, save_acl, session, text

logger = logging.getLogger(__name__)

DATASTORE = "redis"
ROOT_USER = validation.ROOT_USER
ANY_HOST = validation.ANY_HOST
DATABASES = "databases"


class RedisAccounts:
    """ACL users and root of one Redis instance, as Reddwarf's admin user."""

    def __init__(self, where: Target, version: str = "any", *, root_superuser: bool = False) -> None:
        self._where = where
        self._version = version
        self._admin = where.user
        self._root_superuser = root_superuser

    def _hidden_user(self, name: str) -> bool:
        hidden = (config.DEFAULT_USER, self._admin, ROOT_USER, config.REPLICATION_USER)
        return name in hidden or not name or any(ch.isspace() for ch in name)

    def _no_databases(self) -> CapabilityMissing:
        return CapabilityMissing(DATASTORE, self._version, DATABASES)

    # -- databases: none --------------------------------------------------------------------------

    def list_databases(self) -> list[DatabaseSpec]:
        raise self._no_databases()

    def create_databases(self, databases: Sequence[DatabaseSpec]) -> None:
        raise self._no_databases()

    def delete_database(self, name: str) -> None:
        raise self._no_databases()

    def grant(self, name: str, host: str, databases: Sequence[str]) -> None:
        raise self._no_databases()

    def revoke(self, name: str, host: str, database: str) -> None:
        raise self._no_databases()

    # -- users --------------------------------------------------------------------------------------

    def list_users(self) -> list[UserInfo]:
        with session(self._where) as client, _refusals("list users"):
            reply = command(client, "ACL", "USERS")
        names = [text(name) for name in reply] if isinstance(reply, list) else []
        return [UserInfo(name=name, host=ANY_HOST) for name in sorted(names) if not self._hidden_user(name)]

    def get_user(self, name: str, host: str = ANY_HOST) -> UserInfo | None:
        if host != ANY_HOST or self._hidden_user(name):
            return None
        with session(self._where) as client, _refusals(f"inspect user {name!r}"):
            found = command(client, "ACL", "GETUSER", name)
        return None if found is None else UserInfo(name=name, host=ANY_HOST)

    def create_users(self, users: Sequence[UserSpec]) -> None:
        """Create (or make match) each ACL user, then ACL SAVE."""
        for index, user in enumerate(users):
            prefix = f"users[{index}]"
            _check(validation.account_name_problem(user.name), f"{prefix}.name")
            _check(validation.host_problem(user.host), f"{prefix}.host")
            _check(validation.password_problem(user.password.reveal()), f"{prefix}.password")
            if user.databases:
                raise self._no_databases()
        with session(self._where) as client:
            changed = [user.name for user in users if admin.ensure_user(client, user)]
            save_acl(client)
        if changed:
            logger.info("created or updated redis ACL users %s", changed)

    def update_user(
        self,
        name: str,
        host: str = ANY_HOST,
        *,
        new_name: str | None = None,
        new_password: Secret | None = None,
        new_host: str | None = None,
    ) -> None:
        """Rename (new user with the same rules, old one deleted, atomically) and/or set a new password."""
        if host != ANY_HOST or self._hidden_user(name):
            raise NotFound("User", name)
        if new_host is not None:
            _check(validation.host_problem(new_host), "user.host")
        digest = None
        if new_password is not None:
            _check(validation.password_problem(new_password.reveal()), "user.password")
            digest = config.password_hash(new_password.reveal())
        target = new_name if new_name is not None else name
        if target != name:
            _check(validation.account_name_problem(target), "user.name")
        with session(self._where) as client:
            with _refusals(f"update user {name!r}", digest):
                rules = acl_rules(client)
                old, new = rules.get(name), rules.get(target)
                if target != name:
                    if old is not None and new is not None:
                        raise Conflict(f"User {target!r} already exists.")
                    if old is None and new is None:
                        raise NotFound("User", name)
                    if old is not None:  # else a previous run renamed it already
                        _rename(client, name, target, old, digest)
                        logger.info("renamed redis ACL user %r to %r", name, target)
                        digest = None
                elif old is None:
                    raise NotFound("User", name)
                if digest is not None:
                    command(client, "ACL", "SETUSER", target, "resetpass", f"#{digest}")
                    logger.info("set a new password for redis ACL user %r", target)
            save_acl(client)

    def delete_user(self, name: str, host: str = ANY_HOST) -> None:
        """ACL DELUSER (which disconnects the user's clients), then ACL SAVE; a user already gone is no error."""
        if host != ANY_HOST or self._hidden_user(name):
            raise NotFound("User", name)
        with session(self._where) as client:
            with _refusals(f"delete user {name!r}"):
                command(client, "ACL", "DELUSER", name)
            save_acl(client)
        logger.info("deleted redis ACL user %r", name)

    # -- root ---------------------------------------------------------------------------------------

    def root_enabled(self) -> bool:
        with session(self._where) as client, _refusals("inspect the root user"):
            found = command(client, "ACL", "GETUSER", ROOT_USER)
        flags = admin.as_dict(found).get("flags")
        return isinstance(flags, list) and "on" in {text(flag) for flag in flags}

    def enable_root(self, password: Secret) -> str:
        """Make ACL user `root` on, with `password` (as its hash), root's commands, every key and channel."""
        _check(validation.password_problem(password.reveal()), "password")
        digest = config.password_hash(password.reveal())
        with session(self._where) as client:
            with _refusals("enable root", digest):
                command(client, "ACL", "SETUSER", ROOT_USER, *config.root_rules(digest, self._root_superuser))
            save_acl(client)
        logger.info("enabled the redis root user %r (every command: %s)", ROOT_USER, self._root_superuser)
        return ROOT_USER

    def disable_root(self) -> None:
        """ACL DELUSER root (its clients are disconnected), then ACL SAVE."""
        with session(self._where) as client:
            with _refusals("disable root"):
                command(client, "ACL", "DELUSER", ROOT_USER)
            save_acl(client)
        logger.info("disabled the redis superuser %r", ROOT_USER)


def _check(problem: str | None, field: str) -> None:
    if problem:
        raise BadRequest(problem, field=field)


@contextmanager
def _refusals(action: str, digest: str | None = None) -> Iterator[None]:
    """Map a failing command: connection trouble -> `TemporaryError`, a refusal -> `PermanentError`."""
    try:
        yield
    except redis.RedisError as exc:
        message = admin.masked(str(exc), digest) if digest else str(exc)
        if admin.retryable(exc):
            raise TemporaryError(f"Redis could not {action} for now: {message}") from None
        raise PermanentError(f"Redis refused to {action}: {message}", details=type(exc).__name__) from None


def split_rules(line: str) -> list[str]:
    """Split the rules of an `ACL LIST` line on spaces, keeping each `(...)` selector whole (pure)."""
    tokens: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in line:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == " " and depth == 0:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        tokens.append("".join(current))
    return tokens


def parse_acl_list(lines: Sequence[str]) -> dict[str, list[str]]:
    """`ACL LIST`'s `user <name> <rules...>` lines as {name: rules} (pure)."""
    found: dict[str, list[str]] = {}
    for line in lines:
        kind, _, rest = line.partition(" ")
        name, _, rules = rest.partition(" ")
        if kind == "user" and name:
            found[name] = split_rules(rules)
    return found


def acl_rules(client: redis.Redis) -> dict[str, list[str]]:
    reply = command(client, "ACL", "LIST")
    return parse_acl_list([text(line) for line in reply] if isinstance(reply, list) else [])


def _rename(client: redis.Redis, name: str, target: str, rules: list[str], digest: str | None) -> None:
    """Create `target` with `rules` (and a new password), delete `name`: one MULTI/EXEC transaction."""
    pipe = client.pipeline(transaction=True)
    queue = cast(Callable[..., object], pipe.execute_command)
    queue("ACL", "SETUSER", target, "reset", *rules)
    if digest is not None:
        queue("ACL", "SETUSER", target, "resetpass", f"#{digest}")
    queue("ACL", "DELUSER", name)
    pipe.execute()

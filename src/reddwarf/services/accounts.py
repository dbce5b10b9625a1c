"""Account use cases on a running instance: databases, users, grants and root (Trove's mysql extension).

Every use case checks, in this order and before any work: the instance is the caller's (404 otherwise,
admins reach any), the engine offers the capability (400 naming it, e.g. databases on Redis), the instance
is ACTIVE, or BACKUP (422 `unprocessableEntity` otherwise, as Trove's `load_and_verify`).

Reads (list and show databases and users, a user's grants, root status) go live to the engine through
`Engine.accounts()` with the engine's own short timeout: an unreachable server is 503, a refusal 422.

Writes are durable operations (answered 202): the request is checked first against the engine's live
state with the writes accepted before it replayed on top (`services.account_view`: unknown user or
database 404, duplicates 400 as Trove), then ONE unit of work records an operation whose payload holds
names only. Writes are applied one at a time in the order they were accepted; the use case then waits up
to `Settings.account_write_wait` seconds for its write to be applied (as Trove's guest answered once it
had), so a client that connects right after a revoke is refused. A write applied in time answers 202; one
the engine refused in time answers 422 with the reason (the fault is on the instance too); one still
waiting its turn at the deadline answers 202 and is applied later, durably.

Passwords travel encrypted in the secrets repository, owned by the operation id, under
`password` or `password:<index>`; the reconciler (`workflows/reconcilers/accounts.py`) deletes them when
the operation ends. Payloads by kind (hosts are Trove's, `%` where the engine has none):

- `instance.databases.create`  `{"databases": [{"name", "character_set", "collate"}]}`
- `instance.databases.delete`  `{"name"}`
- `instance.users.create`      `{"users": [{"name", "host", "databases": [name]}]}` + `password:<i>`
- `instance.users.update`      `{"name", "host", "new_name", "new_host", "password": bool}` + `password`
- `instance.users.passwords`   `{"users": [{"name", "host"}]}` + `password:<i>`
- `instance.users.delete`      `{"name", "host"}`
- `instance.users.grant`       `{"name", "host", "databases": [name]}`
- `instance.users.revoke`      `{"name", "host", "database"}`

Root enable is synchronous (it must return the password, once) and recorded in the instance's root
history, which the management API shows and the health sweep reads: a tenant with root may break
Reddwarf's own access, and the instance then says so. Reddwarf's admin account is never listed, shown,
changed or dropped through these use cases: its name answers 404 (400 when a create names it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from reddwarf.domain import operations as ops
from reddwarf.domain.accounts import RootHistory, UserInfo
from reddwarf.domain.capabilities import Capability
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    UnprocessableEntity,
)
from reddwarf.domain.instance import DatabaseSpec, Instance, UserSpec
from reddwarf.domain.operations import REGISTRY, Kind, password_secret
from reddwarf.domain.secret import ROOT_SECRET, Secret, generate_secret
from reddwarf.domain.status import InstanceStatus
from reddwarf.engines.base import Accounts, Engine
from reddwarf.identity.context import AuthContext
from reddwarf.services import live
from reddwarf.services.account_view import ACCOUNT_OPERATIONS, AccountView
from reddwarf.services.context import ServiceContext
from reddwarf.services.lookup import load_instance
from reddwarf.store.records import OperationState
from reddwarf.store.uow import UnitOfWork

logger = logging.getLogger(__name__)

# The root password generated at create with `Settings.root_on_create`, until the create's `root` step used it.
ANY_HOST = "%"
ROOT_PASSWORD_BYTES = 24
# Stands in for the unchanged password when a rename is checked against the engine's naming rules.
_UNCHANGED_PASSWORD = Secret("unchanged-password")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a live listing; `next_marker` is what to pass as `marker` for the next page, if any."""

    items: tuple[T, ...]
    next_marker: str | None


@dataclass(frozen=True, slots=True)
class RootCredential:
    """The engine's superuser as root enable answers it: shown to the tenant once, never stored."""

    name: str
    password: Secret


@dataclass(frozen=True, slots=True)
class UserUpdate:
    """Trove's `PUT /users/{user}` attributes; None leaves the attribute as it is."""

    name: str | None = None
    password: Secret | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class _Target:
    ctx: ServiceContext
    instance: Instance
    engine: Engine


def user_key(name: str, host: str) -> str:
    """Trove's user reference and pagination marker: `name@host`."""
    return f"{name}@{host}"


def parse_user_ref(ref: str) -> tuple[str, str]:
    """Trove's `{user}` path segment (already URL-decoded): `name` or `name@host`, host `%` by default.

    The host is what follows the LAST `@`, so names may contain `@`; a trailing `@` means no host.
    """
    if "@" not in ref or ref.endswith("@"):
        return ref, ANY_HOST
    name, _, host = ref.rpartition("@")
    return name, host or ANY_HOST


# -- reads --------------------------------------------------------------------------------------------


def list_databases(
    ctx: ServiceContext, auth: AuthContext, instance_id: str, *, limit: int | None = None, marker: str | None = None
) -> Page[DatabaseSpec]:
    """The instance's tenant databases by name, live, `limit` (capped by the page size) at a time."""
    target = _target(ctx, auth, instance_id, Capability.DATABASES)
    with _live(target) as accounts:
        databases = accounts.list_databases()
    return paginate(ctx, databases, lambda d: d.name, limit, marker)


def get_database(ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str) -> DatabaseSpec:
    target = _target(ctx, auth, instance_id, Capability.DATABASES)
    with _live(target) as accounts:
        found = _find_database(accounts, name)
    if found is None:
        raise NotFound("Database", name)
    return found


def list_users(
    ctx: ServiceContext, auth: AuthContext, instance_id: str, *, limit: int | None = None, marker: str | None = None
) -> Page[UserInfo]:
    """The instance's tenant users (never Reddwarf's admin), live, ordered by `name@host`."""
    target = _target(ctx, auth, instance_id, Capability.USERS)
    with _live(target) as accounts:
        users = [u for u in accounts.list_users() if u.name != target.engine.admin_user]
    return paginate(ctx, users, lambda u: user_key(u.name, u.host), limit, marker)


def get_user(ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str, host: str = ANY_HOST) -> UserInfo:
    target = _target(ctx, auth, instance_id, Capability.USERS)
    with _live(target) as accounts:
        return _existing_user(target, accounts, name, host)


def list_access(
    ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str, host: str = ANY_HOST
) -> tuple[str, ...]:
    """The databases a user may use (Trove's `GET /users/{user}/databases`)."""
    target = _target(ctx, auth, instance_id, Capability.USERS, also=Capability.DATABASES, what="database access")
    with _live(target) as accounts:
        return tuple(sorted(_existing_user(target, accounts, name, host).databases))


def root_enabled(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> bool:
    target = _target(ctx, auth, instance_id, Capability.ROOT)
    with _live(target) as accounts:
        return accounts.root_enabled()


def root_history(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> RootHistory | None:
    """Admin only: when root was first enabled on the instance and by whom (None: never)."""
    if not auth.is_admin:
        raise Forbidden("User does not have admin privileges.")
    with ctx.db.unit_of_work(write=False) as uow:
        _load(uow, auth, instance_id, include_deleted=True)
        history = uow.instances.root_history(instance_id)
    return history[0] if history else None


# -- writes (durable operations) ------------------------------------------------------------------------


def create_databases(
    ctx: ServiceContext, auth: AuthContext, instance_id: str, databases: Sequence[DatabaseSpec]
) -> str:
    """Check the names (the engine's rules, duplicates in the request or on the server), then record an
    `instance.databases.create` operation; returns its id."""
    target = _target(ctx, auth, instance_id, Capability.DATABASES)
    _writable(target)
    if not databases:
        raise BadRequest("databases must list at least one database.", field="databases")
    seen: set[str] = set()
    for index, database in enumerate(databases):
        if not database.name:
            raise BadRequest(f"databases[{index}].name must not be empty.", field=f"databases[{index}].name")
        if database.name in seen:
            raise BadRequest(
                f"databases[{index}].name: database {database.name} is listed twice.", field=f"databases[{index}].name"
            )
        seen.add(database.name)
    target.engine.validate_databases(databases, "databases")
    existing = _view(target).databases
    for index, database in enumerate(databases):
        if database.name in existing:
            raise BadRequest(
                f'A database with the name "{database.name}" already exists.', field=f"databases[{index}].name"
            )
    payload = ops.DatabasesCreate(databases=tuple(
        ops.DatabaseEntry(name=d.name, character_set=d.character_set, collate=d.collate) for d in databases
    ))
    names = ", ".join(d.name for d in databases)
    return _enqueue(ctx, target, Kind.DATABASES_CREATE, payload, {}, f"create database(s) {names} requested")


def delete_database(ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str) -> str:
    target = _target(ctx, auth, instance_id, Capability.DATABASES)
    _writable(target)
    if name not in _view(target).databases:
        raise NotFound("Database", name)
    return _enqueue(
        ctx, target, Kind.DATABASES_DELETE, ops.DatabaseDelete(name=name), {}, f"delete database {name} requested"
    )


def create_users(ctx: ServiceContext, auth: AuthContext, instance_id: str, users: Sequence[UserSpec]) -> str:
    """Check every user (rules, duplicates, databases that must exist), then record `instance.users.create`."""
    target = _target(ctx, auth, instance_id, Capability.USERS)
    _writable(target)
    if not users:
        raise BadRequest("users must list at least one user.", field="users")
    if any(u.databases for u in users):
        _require(target, Capability.DATABASES, "database access")
    seen: set[tuple[str, str]] = set()
    for index, user in enumerate(users):
        _check_user_fields(target, user, f"users[{index}]")
        if (user.name, user.host) in seen:
            raise BadRequest(
                f"users[{index}].name: user {user_key(user.name, user.host)} is listed twice.",
                field=f"users[{index}].name",
            )
        seen.add((user.name, user.host))
    target.engine.validate_users(users, "users")
    view = _view(target)
    existing, databases = view.users, view.databases
    for index, user in enumerate(users):
        if (user.name, user.host) in existing:
            raise BadRequest(f'A user with the name "{user.name}" already exists.', field=f"users[{index}].name")
        for database in user.databases:
            if database not in databases:
                raise NotFound("Database", database)
    payload = ops.UsersCreate(users=tuple(
        ops.UserEntry(name=u.name, host=u.host, databases=tuple(u.databases)) for u in users
    ))
    passwords = {password_secret(index): user.password for index, user in enumerate(users)}
    names = ", ".join(user_key(u.name, u.host) for u in users)
    return _enqueue(ctx, target, Kind.USERS_CREATE, payload, passwords, f"create user(s) {names} requested")


def update_user(
    ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str, host: str, update: UserUpdate
) -> str:
    """Rename, re-host and/or set the password of one user (Trove's `PUT /users/{user}`)."""
    target = _target(ctx, auth, instance_id, Capability.USERS)
    _writable(target)
    if update.name is None and update.password is None and update.host is None:
        raise BadRequest("user must name at least one of name, password and host to change.", field="user")
    _not_admin(target, name, host)
    new_name = update.name if update.name is not None else name
    new_host = (update.host or ANY_HOST) if update.host is not None else host
    candidate = UserSpec(name=new_name, password=update.password or _UNCHANGED_PASSWORD, host=new_host)
    _check_user_fields(target, candidate, "user")
    target.engine.validate_users([candidate], "user")
    moved = (new_name, new_host) != (name, host)
    view = _view(target)
    _accepted_user(view, name, host)
    if moved and view.user_databases(new_name, new_host) is not None:
        raise BadRequest(f'A user with the name "{new_name}" already exists.', field="user.name")
    payload = ops.UserUpdate(
        name=name, host=host, password=update.password is not None,
        new_name=new_name if moved else None, new_host=new_host if moved else None,
    )
    passwords = {password_secret(): update.password} if update.password is not None else {}
    return _enqueue(
        ctx, target, Kind.USERS_UPDATE, payload, passwords, f"update of user {user_key(name, host)} requested"
    )


def change_passwords(ctx: ServiceContext, auth: AuthContext, instance_id: str, users: Sequence[UserSpec]) -> str:
    """Trove's bulk password change (`PUT /users`): every user must exist."""
    target = _target(ctx, auth, instance_id, Capability.USERS)
    _writable(target)
    if not users:
        raise BadRequest("users must list at least one user.", field="users")
    for index, user in enumerate(users):
        _not_admin(target, user.name, user.host)
        _check_user_fields(target, user, f"users[{index}]")
    target.engine.validate_users(users, "users")
    view = _view(target)
    for user in users:
        _accepted_user(view, user.name, user.host)
    payload = ops.UsersPasswords(users=tuple(ops.UserRef(name=u.name, host=u.host) for u in users))
    passwords = {password_secret(index): user.password for index, user in enumerate(users)}
    names = ", ".join(user_key(u.name, u.host) for u in users)
    return _enqueue(ctx, target, Kind.USERS_PASSWORDS, payload, passwords, f"password change of {names} requested")


def delete_user(ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str, host: str = ANY_HOST) -> str:
    target = _target(ctx, auth, instance_id, Capability.USERS)
    _writable(target)
    _not_admin(target, name, host)
    _accepted_user(_view(target), name, host)
    return _enqueue(
        ctx, target, Kind.USERS_DELETE, ops.UserDelete(name=name, host=host), {},
        f"delete user {user_key(name, host)} requested",
    )


def grant(
    ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str, host: str, databases: Sequence[str]
) -> str:
    """Give a user access to existing databases (Trove's `PUT /users/{user}/databases`)."""
    target = _target(ctx, auth, instance_id, Capability.USERS, also=Capability.DATABASES, what="database access")
    _writable(target)
    if not databases:
        raise BadRequest("databases must list at least one database.", field="databases")
    for index, database in enumerate(databases):
        if not database:
            raise BadRequest(f"databases[{index}].name must not be empty.", field=f"databases[{index}].name")
    _not_admin(target, name, host)
    view = _view(target)
    _accepted_user(view, name, host)
    for database in databases:
        if database not in view.databases:
            raise NotFound("Database", database)
    wanted = list(dict.fromkeys(databases))
    payload = ops.Grant(name=name, host=host, databases=tuple(wanted))
    message = f"grant of {', '.join(wanted)} to {user_key(name, host)} requested"
    return _enqueue(ctx, target, Kind.USERS_GRANT, payload, {}, message)


def revoke(ctx: ServiceContext, auth: AuthContext, instance_id: str, name: str, host: str, database: str) -> str:
    """Take a user's access to one database away; the database must be among the user's grants (404)."""
    target = _target(ctx, auth, instance_id, Capability.USERS, also=Capability.DATABASES, what="database access")
    _writable(target)
    _not_admin(target, name, host)
    if database not in _accepted_user(_view(target), name, host):
        raise NotFound("Database", database)
    payload = ops.Revoke(name=name, host=host, database=database)
    message = f"revoke of {database} from {user_key(name, host)} requested"
    return _enqueue(ctx, target, Kind.USERS_REVOKE, payload, {}, message)


# -- root ---------------------------------------------------------------------------------------------


def enable_root(
    ctx: ServiceContext, auth: AuthContext, instance_id: str, password: Secret | None = None
) -> RootCredential:
    """Create or reset the engine's superuser, synchronously; record it in the root history.

    The password is the one given, else a generated one; it is returned once and never stored."""
    target = _target(ctx, auth, instance_id, Capability.ROOT)
    _writable(target)
    if password is not None and not password:
        raise BadRequest("password must not be empty; omit it to get a generated one.", field="password")
    chosen = password if password is not None else new_root_password()
    with _live(target) as accounts:
        name = accounts.enable_root(chosen)
    _mirror_replicas(target)
    with ctx.db.unit_of_work() as uow:
        uow.instances.record_root_enabled(instance_id, _who(auth), ctx.clock())
        uow.events.add(instance_id, "root", f"root ({name}) enabled")
    logger.info("instance %s: root enabled by %s", instance_id, _who(auth))
    return RootCredential(name=name, password=chosen)


def disable_root(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> None:
    """Disable the engine's superuser; 404 when root is not enabled (as Trove)."""
    target = _target(ctx, auth, instance_id, Capability.ROOT)
    _writable(target)
    with _live(target) as accounts:
        if not accounts.root_enabled():
            raise NotFound("User", "root")
        accounts.disable_root()
    _mirror_replicas(target)
    with ctx.db.unit_of_work() as uow:
        uow.events.add(instance_id, "root", "root disabled")
    logger.info("instance %s: root disabled by %s", instance_id, _who(auth))


def new_root_password() -> Secret:
    return generate_secret(ROOT_PASSWORD_BYTES)


def root_password_on_create(ctx: ServiceContext, uow: UnitOfWork, instance: Instance, engine: Engine) -> Secret | None:
    """With `Settings.root_on_create` and an engine offering root: store a new root password for the
    create's `root` step (encrypted, under the instance) and return it for the create response, once.

    Call it from the create's unit of work, after the instance row is added."""
    if not ctx.settings.root_on_create:
        return None
    version = next((v for v in engine.versions() if v.name == instance.spec.datastore_version), None)
    if version is None or not engine.capabilities(version).has(Capability.ROOT):
        return None
    password = new_root_password()
    uow.secrets.put(instance.id, ROOT_SECRET, password)
    return password


# -- helpers ------------------------------------------------------------------------------------------


def paginate(
    ctx: ServiceContext, items: Sequence[T], key: Callable[[T], str], limit: int | None, marker: str | None
) -> Page[T]:
    """Trove's `limit`/`marker` over a live listing: items sorted by `key`, those after `marker`."""
    if limit is not None and limit < 1:
        raise BadRequest("limit must be a positive integer.", field="limit")
    page_size = min(limit, ctx.page_size) if limit is not None else ctx.page_size
    ordered = sorted(items, key=key)
    if marker is not None:
        ordered = [item for item in ordered if key(item) > marker]
    page = tuple(ordered[:page_size])
    next_marker = key(page[-1]) if len(ordered) > page_size and page else None
    return Page(items=page, next_marker=next_marker)


_load = load_instance


def _target(
    ctx: ServiceContext, auth: AuthContext, instance_id: str, capability: Capability,
    *, also: Capability | None = None, what: str | None = None,
) -> _Target:
    """The caller's instance, its engine offering `capability` (and `also`), ACTIVE; else 404, 400, 422."""
    with ctx.db.unit_of_work(write=False) as uow:
        instance = _load(uow, auth, instance_id)
    engine = ctx.engines.get(instance.spec.datastore)
    if engine is None:
        raise UnprocessableEntity(f"Datastore {instance.spec.datastore} is not available on this server.")
    target = _Target(ctx=ctx, instance=instance, engine=engine)
    _require(target, capability, what)
    if also is not None:
        _require(target, also, what)
    # A backup does not stop the server: accounts can be read and written meanwhile, as in Trove.
    if instance.deleting or instance.status not in SERVING:
        state = "DELETING" if instance.deleting else instance.status.value
        raise UnprocessableEntity(f"Instance {instance_id} is not ready (status {state}); it must be ACTIVE.")
    return target


SERVING = frozenset({InstanceStatus.ACTIVE, InstanceStatus.BACKUP})


def _writable(target: _Target) -> None:
    """A replica is read-only: its accounts are its primary's, changed there and replicated (422 here)."""
    source = target.instance.replica_of
    if source is not None:
        raise UnprocessableEntity(f"Instance {target.instance.id} is a replica of instance {source} and is "
                                  f"read-only: change users, databases and root on {source}; they replicate.")


_CAPABILITY_WORDS = {
    Capability.DATABASES: "databases",
    Capability.USERS: "users",
    Capability.ROOT: "root",
}


def _version(target: _Target) -> DatastoreVersion | None:
    """The installed version the instance runs, or None when it is no longer installed."""
    wanted = target.instance.spec.datastore_version
    return next((v for v in target.engine.versions() if v.name == wanted), None)


def _require(target: _Target, capability: Capability, what: str | None = None) -> None:
    spec = target.instance.spec
    version = _version(target)
    if version is None:
        raise UnprocessableEntity(
            f"Datastore {spec.datastore} version {spec.datastore_version} is no longer installed on this server."
        )
    if not target.engine.capabilities(version).has(capability):
        words = what or _CAPABILITY_WORDS.get(capability, capability.value)
        raise BadRequest(
            f"{words[0].upper()}{words[1:]} not supported by {spec.datastore} "
            f"(datastore {spec.datastore} version {spec.datastore_version} does not offer {capability.value}).",
            field=capability.value,
        )


def _check_user_fields(target: _Target, user: UserSpec, field: str) -> None:
    if not user.name:
        raise BadRequest(f"{field}.name must not be empty.", field=f"{field}.name")
    if not user.password:
        raise BadRequest(f"{field}.password is required and must not be empty.", field=f"{field}.password")
    if not user.host:
        raise BadRequest(f"{field}.host must not be empty (omit it for any host).", field=f"{field}.host")
    if user.name == target.engine.admin_user:
        raise BadRequest(f"{field}.name: {user.name} is reserved for Reddwarf's own use.", field=f"{field}.name")


def _not_admin(target: _Target, name: str, host: str) -> None:
    if name == target.engine.admin_user:
        raise NotFound("User", user_key(name, host))


def _existing_user(target: _Target, accounts: Accounts, name: str, host: str) -> UserInfo:
    """The user, or 404; Reddwarf's admin account is never found."""
    found = None if name == target.engine.admin_user else accounts.get_user(name, host)
    if found is None:
        raise NotFound("User", user_key(name, host))
    return found


def _accepted_user(view: AccountView, name: str, host: str) -> set[str]:
    """The user's databases once the accepted writes are applied, or 404 when it will not exist."""
    found = view.user_databases(name, host)
    if found is None:
        raise NotFound("User", user_key(name, host))
    return found


def _view(target: _Target) -> AccountView:
    """The instance's accounts as the next write must see them: live, then the accepted writes replayed.

    The accepted writes are read BEFORE the live state: one applied in between shows in both, and replaying
    an applied write again changes nothing (writes are replayed in their order), while one read after
    could have been applied after the live read and be missed."""
    ctx, instance = target.ctx, target.instance
    with ctx.db.unit_of_work(write=False) as uow:
        accepted = [(op.kind, op.payload) for op in uow.operations.active_for(instance.id)
                    if op.kind in ACCOUNT_OPERATIONS]
    with _live(target) as accounts:
        databases = accounts.list_databases() if _offers(target, Capability.DATABASES) else []
        users = [u for u in accounts.list_users() if u.name != target.engine.admin_user]
    return AccountView.live(databases, users).replay(accepted)


def _offers(target: _Target, capability: Capability) -> bool:
    version = _version(target)
    return version is not None and target.engine.capabilities(version).has(capability)


def _find_database(accounts: Accounts, name: str) -> DatabaseSpec | None:
    return next((d for d in accounts.list_databases() if d.name == name), None)


@contextmanager
def _live(target: _Target) -> Iterator[Accounts]:
    """The engine's accounts of the target, connected as Reddwarf's admin; engine errors become 503/422."""
    with live.reach(target.ctx, target.instance) as (placement, admin_password):
        yield target.engine.accounts(placement, admin_password)


def _mirror_replicas(target: _Target) -> None:
    """Where replication does not bring accounts (Redis's ACL users), the primary's copied to each of its
    replicas that answers now; one that does not gets them at the set's next change (an event says so)."""
    ctx, instance = target.ctx, target.instance
    version = _version(target)
    replication = None if version is None else target.engine.replication(version)
    if replication is None or replication.carries_accounts() or ctx.placement_for is None:
        return
    with ctx.db.unit_of_work(write=False) as uow:
        found = uow.replication.set_of(instance.id)
        replicas = [] if found is None else [uow.instances.get(r) for r in found.replica_ids]
    for replica in replicas:
        if replica is None or replica.deleting or replica.endpoint is None:
            continue
        try:
            with live.reach(ctx, instance) as (placement, admin_password):
                replication.mirror_accounts(placement, ctx.placement_for(replica), admin_password)
        except (ServiceUnavailable, UnprocessableEntity) as exc:
            logger.warning("instance %s: accounts not copied to replica %s: %s", instance.id, replica.id, exc)
            with ctx.db.unit_of_work() as uow:
                uow.events.add(replica.id, "replica", "its source's accounts were not copied to it now; they are "
                               "at the set's next change")


def _who(auth: AuthContext) -> str:
    """Who did it, for the root history: the token's id (builtin or Keystone audit id), else the project."""
    return auth.token_id or auth.project_id


def _enqueue(
    ctx: ServiceContext, target: _Target, kind: Kind, payload: ops.Payload, passwords: dict[str, Secret],
    message: str,
) -> str:
    """ONE unit of work: the operation, its passwords (encrypted, owned by the operation) and an event."""
    instance_id = target.instance.id
    if type(payload) is not REGISTRY[kind].payload:
        raise TypeError(f"operation kind {kind} carries {REGISTRY[kind].payload.__name__}")
    with ctx.db.unit_of_work() as uow:
        op_id = ctx.enqueue(uow, kind, instance_id, payload.model_dump(mode="json"))
        for name, password in passwords.items():
            uow.secrets.put(op_id, name, password)
        uow.events.add(instance_id, kind.removeprefix("instance."), message)
    logger.info("instance %s: %s (operation %s)", instance_id, message, op_id)
    project = target.instance.project_id
    # Waiting holds an API thread: a project gets as many waits as live reads, the rest answer 202 at once.
    if ctx.live_reads.enter(project, ctx.settings.live_reads_per_project):
        try:
            _settle(ctx, op_id)
        finally:
            ctx.live_reads.leave(project)
    return op_id


_FIRST_LOOK = 0.005
_LONGEST_LOOK = 0.1


def _settle(ctx: ServiceContext, op_id: str) -> None:
    """Wait up to `account_write_wait` seconds for the write to be applied; 422 when the engine refused it.

    A bounded look at the durable record, not work done in the request: the worker applies the write
    whether or not anyone waits, and a write still queued at the deadline is answered 202 as accepted."""
    deadline = time.monotonic() + ctx.settings.account_write_wait
    pause = _FIRST_LOOK
    while True:
        with ctx.db.unit_of_work(write=False) as uow:
            op = uow.operations.get(op_id)
        if op is None or op.state in (OperationState.DONE, OperationState.SUPERSEDED):
            return
        if op.state == OperationState.FAILED:
            raise UnprocessableEntity(op.last_error or "The change was refused by the database server.")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.info("operation %s: not applied within %.1f s; it goes on", op_id, ctx.settings.account_write_wait)
            return
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, _LONGEST_LOOK)

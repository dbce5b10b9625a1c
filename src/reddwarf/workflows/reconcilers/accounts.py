"""The account operations: databases, users and grants written on a running instance, one step each.

One handler serves every kind `services.accounts` records (see its docstring for the payloads). Steps:

1. `apply` calls the engine's `Accounts` as Reddwarf's admin. Engine writes are idempotent (creating what
   exists, dropping what is gone succeed), so a worker that died after the work and before the journal
   re-runs it harmlessly; a rename re-run after it happened is recognised and finishes the password.
2. `spec` mirrors the change onto the instance spec for the users the create named (their password,
   name, host, grants), so that a re-run create's `verify`, which logs in as the first of them (over the
   instance's unix socket), keeps working after a tenant changed that user. Users created later are not
   added: their passwords are not kept.
3. `forget` deletes the operation's passwords from the secrets repository (also on failure).

Operations on one instance run in the order they were requested: an operation waits (retried with a
short delay) while an older operation on the same instance is pending or running. An operation on an
instance being deleted ends without touching it. A refusal (the engine's `PermanentError`, or a request
error such as `NotFound`) fails the operation and records a fault on the instance WITHOUT changing its
status: the instance still runs; the fault says which change did not happen and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reddwarf.domain.errors import NotYet, PermanentError, RequestError, StoreUnavailable
from reddwarf.domain.instance import DatabaseSpec, Instance, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import Fault
from reddwarf.engines.base import Accounts
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps

log = logging.getLogger(__name__)

DATABASES_CREATE = "instance.databases.create"
DATABASES_DELETE = "instance.databases.delete"
USERS_CREATE = "instance.users.create"
USERS_UPDATE = "instance.users.update"
USERS_PASSWORDS = "instance.users.passwords"
USERS_DELETE = "instance.users.delete"
USERS_GRANT = "instance.users.grant"
USERS_REVOKE = "instance.users.revoke"
KINDS = (
    DATABASES_CREATE, DATABASES_DELETE, USERS_CREATE, USERS_UPDATE, USERS_PASSWORDS, USERS_DELETE, USERS_GRANT,
    USERS_REVOKE,
)
PASSWORD = "password"
ANY_HOST = "%"
# Waiting for an older operation on the same instance: delays grow from the first to the last.
FIRST_WAIT = 0.05
LONGEST_WAIT = 3.0

_DESCRIPTIONS = {
    DATABASES_CREATE: "Creating databases",
    DATABASES_DELETE: "Deleting a database",
    USERS_CREATE: "Creating users",
    USERS_UPDATE: "Updating a user",
    USERS_PASSWORDS: "Changing user passwords",
    USERS_DELETE: "Deleting a user",
    USERS_GRANT: "Granting database access",
    USERS_REVOKE: "Revoking database access",
}


def password_name(index: int | None = None) -> str:
    return PASSWORD if index is None else f"{PASSWORD}:{index}"


class AccountOperation:
    """Runs every `instance.databases.*` and `instance.users.*` operation (see the module docstring)."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            instance = uow.instances.get(ctx.resource_id)
            earlier = [op for op in uow.operations.active_for(ctx.resource_id) if _before(op.created, op.id, ctx)]
        if instance is None or instance.deleting:
            log.info("operation %s: instance %s is gone or being deleted; nothing to do", ctx.op.id, ctx.resource_id)
            self._forget(ctx)
            return
        if earlier:
            delay = min(FIRST_WAIT * 2 ** max(ctx.op.attempts - 1, 0), LONGEST_WAIT)
            raise NotYet(f"waiting for operation {earlier[0].id} ({earlier[0].kind}) to finish", delay=delay)
        try:
            ctx.step("apply", lambda: self._apply(ctx, instance))
        except StoreUnavailable:
            raise  # the store's outage, not the request's fault: the worker retries once it is back
        except RequestError as exc:
            raise PermanentError(exc.message) from exc
        ctx.step("spec", lambda: self._mirror(ctx, instance.id))
        ctx.step("forget", lambda: self._forget(ctx))

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        deps = self.deps
        with deps.db.unit_of_work() as uow:
            instance = uow.instances.get(ctx.resource_id)
            uow.secrets.delete_owner(ctx.op.id)
            if instance is None:
                return
            what = _DESCRIPTIONS.get(ctx.op.kind, ctx.op.kind)
            fault = Fault(message=f"{what} failed: {error.message}", details=error.details, created=time.time())
            uow.instances.set_status(instance.id, instance.status, instance.operating_status, fault=fault)
            uow.events.add(instance.id, "fault", fault.message)

    # -- steps --------------------------------------------------------------------------------------

    def _apply(self, ctx: OperationContext, instance: Instance) -> None:
        deps = self.deps
        engine = deps.engine(instance)
        accounts = engine.accounts(deps.placement(instance), deps.admin_password(instance.id))
        payload = ctx.op.payload
        passwords = self._passwords(ctx)
        apply_change(accounts, ctx.op.kind, payload, passwords)

    def _mirror(self, ctx: OperationContext, instance_id: str) -> None:
        with self.deps.db.unit_of_work() as uow:
            instance = uow.instances.get(instance_id)
            if instance is None:
                return
            passwords = _secrets(uow, ctx.op.id)
            spec = mirror_spec(instance.spec, ctx.op.kind, ctx.op.payload, passwords)
            if spec != instance.spec:
                uow.instances.update_spec(instance_id, spec)
            uow.events.add(instance_id, ctx.op.kind.removeprefix("instance."), "done")

    def _forget(self, ctx: OperationContext) -> None:
        with self.deps.db.unit_of_work() as uow:
            uow.secrets.delete_owner(ctx.op.id)

    def _passwords(self, ctx: OperationContext) -> dict[str, Secret]:
        with self.deps.db.unit_of_work(write=False) as uow:
            return _secrets(uow, ctx.op.id)


def _secrets(uow: UnitOfWork, owner: str) -> dict[str, Secret]:
    return uow.secrets.of_owner(owner)


def _before(created: float, op_id: str, ctx: OperationContext) -> bool:
    """Was this operation requested before the running one (ties broken by id, as the queue orders them)?"""
    return op_id != ctx.op.id and (created, op_id) < (ctx.op.created, ctx.op.id)


def _password(passwords: Mapping[str, Secret], name: str) -> Secret:
    password = passwords.get(name)
    if password is None:
        raise PermanentError("The password of this request is no longer available; send the request again.")
    return password


def apply_change(accounts: Accounts, kind: str, payload: Mapping[str, Any], passwords: Mapping[str, Secret]) -> None:
    """Make the engine match the request recorded in `payload` (idempotent; see the module docstring)."""
    if kind == DATABASES_CREATE:
        accounts.create_databases([
            DatabaseSpec(name=d["name"], character_set=d.get("character_set"), collate=d.get("collate"))
            for d in payload["databases"]
        ])
    elif kind == DATABASES_DELETE:
        accounts.delete_database(payload["name"])
    elif kind == USERS_CREATE:
        accounts.create_users([
            UserSpec(name=u["name"], password=_password(passwords, password_name(i)), host=u.get("host") or ANY_HOST,
                     databases=tuple(u.get("databases") or ()))
            for i, u in enumerate(payload["users"])
        ])
    elif kind == USERS_UPDATE:
        _update_user(accounts, payload, passwords)
    elif kind == USERS_PASSWORDS:
        for index, user in enumerate(payload["users"]):
            accounts.update_user(
                user["name"], user.get("host") or ANY_HOST, new_password=_password(passwords, password_name(index))
            )
    elif kind == USERS_DELETE:
        accounts.delete_user(payload["name"], payload.get("host") or ANY_HOST)
    elif kind == USERS_GRANT:
        accounts.grant(payload["name"], payload.get("host") or ANY_HOST, list(payload["databases"]))
    elif kind == USERS_REVOKE:
        accounts.revoke(payload["name"], payload.get("host") or ANY_HOST, payload["database"])
    else:
        raise PermanentError(f"Unknown account operation {kind}.")


def _update_user(accounts: Accounts, payload: Mapping[str, Any], passwords: Mapping[str, Secret]) -> None:
    name, host = payload["name"], payload.get("host") or ANY_HOST
    new_name, new_host = payload.get("new_name"), payload.get("new_host")
    password = _password(passwords, password_name()) if payload.get("password") else None
    moved = new_name is not None or new_host is not None
    target_name, target_host = new_name or name, new_host or host
    if moved and accounts.get_user(name, host) is None and accounts.get_user(target_name, target_host) is not None:
        # The rename already happened (a worker died before journaling it): finish the password only.
        if password is not None:
            accounts.update_user(target_name, target_host, new_password=password)
        return
    accounts.update_user(
        name, host,
        new_name=new_name if new_name != name else None,
        new_password=password,
        new_host=new_host if new_host != host else None,
    )


def mirror_spec(
    spec: InstanceSpec, kind: str, payload: Mapping[str, Any], passwords: Mapping[str, Secret]
) -> InstanceSpec:
    """The spec after the change, for the users the create named (pure; see the module docstring)."""
    users = list(spec.users)
    databases = list(spec.databases)

    def index_of(name: str, host: str) -> int | None:
        return next((i for i, u in enumerate(users) if (u.name, u.host) == (name, host)), None)

    if kind == USERS_UPDATE:
        found = index_of(payload["name"], payload.get("host") or ANY_HOST)
        if found is not None:
            user = users[found]
            new_password = passwords.get(password_name()) if payload.get("password") else None
            users[found] = replace(
                user,
                name=payload.get("new_name") or user.name,
                host=payload.get("new_host") or user.host,
                password=new_password or user.password,
            )
    elif kind == USERS_PASSWORDS:
        for index, entry in enumerate(payload["users"]):
            found = index_of(entry["name"], entry.get("host") or ANY_HOST)
            password = passwords.get(password_name(index))
            if found is not None and password is not None:
                users[found] = replace(users[found], password=password)
    elif kind == USERS_DELETE:
        found = index_of(payload["name"], payload.get("host") or ANY_HOST)
        if found is not None:
            del users[found]
    elif kind == USERS_GRANT:
        found = index_of(payload["name"], payload.get("host") or ANY_HOST)
        if found is not None:
            granted = tuple(dict.fromkeys((*users[found].databases, *payload["databases"])))
            users[found] = replace(users[found], databases=granted)
    elif kind == USERS_REVOKE:
        found = index_of(payload["name"], payload.get("host") or ANY_HOST)
        if found is not None:
            kept = tuple(d for d in users[found].databases if d != payload["database"])
            users[found] = replace(users[found], databases=kept)
    elif kind == DATABASES_DELETE:
        name = payload["name"]
        databases = [d for d in databases if d.name != name]
        users = [replace(u, databases=tuple(d for d in u.databases if d != name)) for u in users]
    return replace(spec, users=tuple(users), databases=tuple(databases))


def handlers(deps: ReconcilerDeps) -> dict[str, AccountOperation]:
    handler = AccountOperation(deps)
    return dict.fromkeys(KINDS, handler)

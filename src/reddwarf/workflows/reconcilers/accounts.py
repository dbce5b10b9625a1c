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

Operations on one instance run one at a time, in the order they were requested: the claim does not start
one while an older conflicting operation on the instance is pending or running (`domain.operations`, the
`accounts` lane), and the operation's payload is read through its kind's model. An operation on an
instance being deleted ends without touching it. A refusal (the engine's `PermanentError`, or a request
error such as `NotFound`) fails the operation and records a fault on the instance WITHOUT changing its
status: the instance still runs; the fault says which change did not happen and why. Both that fault and the
observed generation of a mirrored spec are written by the status compare-and-swap
(`InstanceRepository.record`), conditions unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reddwarf.domain import operations as ops
from reddwarf.domain.errors import PermanentError, RequestError, StoreUnavailable
from reddwarf.domain.instance import DatabaseSpec, Instance, InstanceSpec, UserSpec
from reddwarf.domain.operations import KINDS_BY_LANE, Kind, Lane, password_secret, payload_of, spec_of
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import Fault
from reddwarf.engines.base import Accounts
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import OperationContext
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.replication import mirror_accounts

log = logging.getLogger(__name__)

KINDS = KINDS_BY_LANE[Lane.ACCOUNTS]


class AccountOperation:
    """Runs every `instance.databases.*` and `instance.users.*` operation (see the module docstring)."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            instance = uow.instances.get(ctx.resource_id)
        if instance is None or instance.deleting:
            log.info("operation %s: instance %s is gone or being deleted; nothing to do", ctx.op.id, ctx.resource_id)
            self._forget(ctx)
            return
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
            what = spec_of(ctx.op.kind).description
            fault = Fault(message=f"{what} failed: {error.message}", details=error.details, created=time.time())
            # The fault alone: the conditions (and so the statuses) stay as they are.
            uow.instances.record(instance.id, None, generation=instance.generation, fault=fault)
            uow.events.add(instance.id, "fault", fault.message)

    # -- steps --------------------------------------------------------------------------------------

    def _apply(self, ctx: OperationContext, instance: Instance) -> None:
        deps = self.deps
        engine = deps.engine(instance)
        accounts = engine.accounts(deps.placement(instance), deps.admin_password(instance.id))
        payload = ctx.op.payload
        passwords = self._passwords(ctx)
        apply_change(accounts, ctx.op.kind, payload, passwords)
        # Redis's replicas do not receive users by replication: they get the primary's copied.
        with deps.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(instance.id)
        if found is not None and found.primary_id == instance.id:
            mirror_accounts(deps, instance, found.replica_ids)

    def _mirror(self, ctx: OperationContext, instance_id: str) -> None:
        with self.deps.db.unit_of_work() as uow:
            instance = uow.instances.get(instance_id)
            if instance is None:
                return
            passwords = _secrets(uow, ctx.op.id)
            spec = mirror_spec(instance.spec, ctx.op.kind, ctx.op.payload, passwords)
            if spec != instance.spec:
                # This operation applied the new spec itself: the status is based on it from now on.
                generation = uow.instances.update_spec(instance_id, spec)
                uow.instances.record(instance_id, None, generation=generation)
            uow.events.add(instance_id, ctx.op.kind.removeprefix("instance."), "done")

    def _forget(self, ctx: OperationContext) -> None:
        with self.deps.db.unit_of_work() as uow:
            uow.secrets.delete_owner(ctx.op.id)

    def _passwords(self, ctx: OperationContext) -> dict[str, Secret]:
        with self.deps.db.unit_of_work(write=False) as uow:
            return _secrets(uow, ctx.op.id)


def _secrets(uow: UnitOfWork, owner: str) -> dict[str, Secret]:
    return uow.secrets.of_owner(owner)


def _password(passwords: Mapping[str, Secret], name: str) -> Secret:
    password = passwords.get(name)
    if password is None:
        raise PermanentError("The password of this request is no longer available; send the request again.")
    return password


def apply_change(accounts: Accounts, kind: str, raw: Mapping[str, Any], passwords: Mapping[str, Secret]) -> None:
    """Make the engine match the request recorded in the payload `raw` (idempotent; see the module docstring)."""
    if kind == Kind.DATABASES_CREATE:
        accounts.create_databases([
            DatabaseSpec(name=d.name, character_set=d.character_set, collate=d.collate)
            for d in payload_of(kind, raw, ops.DatabasesCreate).databases
        ])
    elif kind == Kind.DATABASES_DELETE:
        accounts.delete_database(payload_of(kind, raw, ops.DatabaseDelete).name)
    elif kind == Kind.USERS_CREATE:
        accounts.create_users([
            UserSpec(name=u.name, password=_password(passwords, password_secret(i)), host=u.host,
                     databases=u.databases)
            for i, u in enumerate(payload_of(kind, raw, ops.UsersCreate).users)
        ])
    elif kind == Kind.USERS_UPDATE:
        _update_user(accounts, payload_of(kind, raw, ops.UserUpdate), passwords)
    elif kind == Kind.USERS_PASSWORDS:
        for index, user in enumerate(payload_of(kind, raw, ops.UsersPasswords).users):
            accounts.update_user(user.name, user.host, new_password=_password(passwords, password_secret(index)))
    elif kind == Kind.USERS_DELETE:
        gone = payload_of(kind, raw, ops.UserDelete)
        accounts.delete_user(gone.name, gone.host)
    elif kind == Kind.USERS_GRANT:
        grant = payload_of(kind, raw, ops.Grant)
        accounts.grant(grant.name, grant.host, list(grant.databases))
    elif kind == Kind.USERS_REVOKE:
        revoke = payload_of(kind, raw, ops.Revoke)
        accounts.revoke(revoke.name, revoke.host, revoke.database)
    else:
        raise PermanentError(f"Unknown account operation {kind}.")


def _update_user(accounts: Accounts, update: ops.UserUpdate, passwords: Mapping[str, Secret]) -> None:
    name, host = update.name, update.host
    new_name, new_host = update.new_name, update.new_host
    password = _password(passwords, password_secret()) if update.password else None
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
    spec: InstanceSpec, kind: str, raw: Mapping[str, Any], passwords: Mapping[str, Secret]
) -> InstanceSpec:
    """The spec after the change, for the users the create named (pure; see the module docstring)."""
    users = list(spec.users)
    databases = list(spec.databases)

    def index_of(name: str, host: str) -> int | None:
        return next((i for i, u in enumerate(users) if (u.name, u.host) == (name, host)), None)

    if kind == Kind.USERS_UPDATE:
        update = payload_of(kind, raw, ops.UserUpdate)
        found = index_of(update.name, update.host)
        if found is not None:
            user = users[found]
            new_password = passwords.get(password_secret()) if update.password else None
            users[found] = replace(
                user,
                name=update.new_name or user.name,
                host=update.new_host or user.host,
                password=new_password or user.password,
            )
    elif kind == Kind.USERS_PASSWORDS:
        for index, entry in enumerate(payload_of(kind, raw, ops.UsersPasswords).users):
            found = index_of(entry.name, entry.host)
            password = passwords.get(password_secret(index))
            if found is not None and password is not None:
                users[found] = replace(users[found], password=password)
    elif kind == Kind.USERS_DELETE:
        gone = payload_of(kind, raw, ops.UserDelete)
        found = index_of(gone.name, gone.host)
        if found is not None:
            del users[found]
    elif kind == Kind.USERS_GRANT:
        grant = payload_of(kind, raw, ops.Grant)
        found = index_of(grant.name, grant.host)
        if found is not None:
            granted = tuple(dict.fromkeys((*users[found].databases, *grant.databases)))
            users[found] = replace(users[found], databases=granted)
    elif kind == Kind.USERS_REVOKE:
        revoke = payload_of(kind, raw, ops.Revoke)
        found = index_of(revoke.name, revoke.host)
        if found is not None:
            kept = tuple(d for d in users[found].databases if d != revoke.database)
            users[found] = replace(users[found], databases=kept)
    elif kind == Kind.DATABASES_DELETE:
        name = payload_of(kind, raw, ops.DatabaseDelete).name
        databases = [d for d in databases if d.name != name]
        users = [replace(u, databases=tuple(d for d in u.databases if d != name)) for u in users]
    return replace(spec, users=tuple(users), databases=tuple(databases))


def handlers(deps: ReconcilerDeps) -> dict[str, AccountOperation]:
    handler = AccountOperation(deps)
    return dict.fromkeys(KINDS, handler)

"""Finding the instance a request names, within what the caller may see (shared by every use case)."""

from __future__ import annotations

import uuid

from reddwarf.domain.errors import NotFound
from reddwarf.domain.instance import Instance
from reddwarf.identity.context import AuthContext
from reddwarf.store.uow import UnitOfWork


def is_instance_id(value: str) -> bool:
    """Instance ids are UUIDs; anything else (a NUL byte a PostgreSQL store would choke on) is no instance."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def load_instance(uow: UnitOfWork, auth: AuthContext, instance_id: str, *, include_deleted: bool = False) -> Instance:
    """The instance, or `NotFound` -- also when it belongs to another project and the caller is no admin,
    so that a tenant cannot learn that another project's instance exists."""
    instance = uow.instances.get(instance_id, include_deleted=include_deleted) if is_instance_id(instance_id) else None
    if instance is None or (not auth.is_admin and instance.project_id != auth.project_id):
        raise NotFound("Instance", instance_id.encode("unicode_escape").decode("ascii")[:64])
    return instance

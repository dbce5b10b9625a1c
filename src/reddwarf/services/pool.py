"""The warm pool as operators see it (admin only): the target from the settings and every slot's state."""

from __future__ import annotations

from reddwarf.domain.errors import Forbidden
from reddwarf.domain.pool import PoolSlot
from reddwarf.identity.context import AuthContext
from reddwarf.services.context import ServiceContext


def list_slots(ctx: ServiceContext, auth: AuthContext) -> list[PoolSlot]:
    """Every warm-pool slot, oldest first: building, ready, failed (with the build's error) and retiring."""
    if not auth.is_admin:
        raise Forbidden("User does not have admin privileges.")
    with ctx.db.unit_of_work(write=False) as uow:
        return uow.pool.list()

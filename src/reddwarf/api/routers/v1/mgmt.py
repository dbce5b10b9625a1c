"""`/v1.0/{project_id}/mgmt/...`: Trove's management API (admin only): the root history, the warm pool."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from reddwarf.api.deps import AuthDep, ContextDep
from reddwarf.api.views import isotime
from reddwarf.services import accounts, pool

router = APIRouter(prefix="/mgmt", tags=["mgmt"])


@router.get(
    "/instances/{instance_id}/root", summary="When root was enabled on an instance, and by whom (admin)",
    description='Trove\'s `{"root_history": {"id", "enabled", "user"}}`: "Never" and "Nobody" when root was '
    "never enabled; otherwise the first time root was enabled and the token (or project) that did it.",
)
def root_history(instance_id: str, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    history = accounts.root_history(ctx, auth, instance_id)
    return {
        "root_history": {
            "id": instance_id,
            "enabled": "Never" if history is None else isotime(history.enabled_at),
            "user": "Nobody" if history is None else history.user_id,
        }
    }


@router.get(
    "/pool", summary="The warm pool: its target and every slot (admin)",
    description="Reddwarf's extension. `target` is what the operator configured (`REDDWARF_WARM_POOL_*`); each "
    "slot is a server built ahead of time for creates of that profile: `building`, `ready` (a create takes "
    "it), `failed` (with the build's error; the profile waits before it is built again) or `retiring`.",
)
def warm_pool(ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    slots = pool.list_slots(ctx, auth)
    settings = ctx.settings
    return {
        "pool": {
            "target": {
                "size": settings.warm_pool_size, "flavor": settings.warm_pool_flavor,
                "volume_size": settings.warm_pool_volume_gb,
            },
            "slots": [
                {
                    "id": slot.id, "datastore": slot.profile.datastore, "version": slot.profile.version,
                    "flavor": slot.profile.flavor_id, "volume_size": slot.profile.volume_gb,
                    "state": slot.state.value, "error": slot.error, "created": isotime(slot.created),
                    "updated": isotime(slot.updated),
                }
                for slot in slots
            ],
        }
    }

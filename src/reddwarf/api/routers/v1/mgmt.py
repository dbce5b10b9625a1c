"""`/v1.0/{project_id}/mgmt/...`: Trove's management API (admin only). So far: the root history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from reddwarf.api.deps import AuthDep, ContextDep
from reddwarf.api.views import isotime
from reddwarf.services import accounts

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

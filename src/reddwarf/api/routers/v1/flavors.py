"""`/v1.0/{project_id}/flavors`: the operator's flavors (Trove's flavor view; ids as strings)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from reddwarf.api import views
from reddwarf.api.deps import AuthDep, BaseUrlDep, ContextDep
from reddwarf.services import catalog

router = APIRouter(prefix="/flavors", tags=["flavors"])


@router.get("", summary="List flavors")
def list_flavors(ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    return {
        "flavors": [views.flavor_view(f, base=base, project_id=auth.project_id) for f in catalog.list_flavors(ctx)]
    }


@router.get("/{flavor_id}", summary="Show a flavor")
def show_flavor(flavor_id: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    flavor = catalog.get_flavor(ctx, flavor_id)
    return {"flavor": views.flavor_view(flavor, base=base, project_id=auth.project_id)}

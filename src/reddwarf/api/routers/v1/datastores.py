"""`/v1.0/{project_id}/datastores`: datastores and versions, from what the engines find installed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from reddwarf.api import views
from reddwarf.api.deps import AuthDep, BaseUrlDep, ContextDep
from reddwarf.services import catalog

router = APIRouter(prefix="/datastores", tags=["datastores"])


@router.get("", summary="List datastores")
def list_datastores(ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    datastores = catalog.list_datastores(ctx, include_inactive=auth.is_admin)
    return {
        "datastores": [
            views.datastore_view(d, base=base, project_id=auth.project_id, is_admin=auth.is_admin)
            for d in datastores
        ]
    }


# Registered before "/{datastore}/..." so that "versions" is never taken for a datastore name.
@router.get("/versions/{version_id}", summary="Show a datastore version by id")
def show_version_by_id(version_id: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    version = catalog.get_version_by_id(ctx, version_id, include_inactive=auth.is_admin)
    return {"version": views.datastore_version_view(version, base=base, project_id=auth.project_id)}


@router.get("/{datastore}", summary="Show a datastore (by id or name)")
def show_datastore(datastore: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    found = catalog.get_datastore(ctx, datastore, include_inactive=auth.is_admin)
    return {
        "datastore": views.datastore_view(found, base=base, project_id=auth.project_id, is_admin=auth.is_admin)
    }


@router.get("/{datastore}/versions", summary="List the versions of a datastore")
def list_versions(datastore: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    found = catalog.get_datastore(ctx, datastore, include_inactive=auth.is_admin)
    return {
        "versions": [
            views.datastore_version_view(v, base=base, project_id=auth.project_id) for v in found.versions
        ]
    }


@router.get("/{datastore}/versions/{version}", summary="Show a datastore version (by id or name)")
def show_version(
    datastore: str, version: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep
) -> dict[str, Any]:
    found = catalog.get_version(ctx, datastore, version, include_inactive=auth.is_admin)
    return {"version": views.datastore_version_view(found, base=base, project_id=auth.project_id)}

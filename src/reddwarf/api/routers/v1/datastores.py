"""`/v1.0/{project_id}/datastores`: datastores and versions, from what the engines find installed.

Extension fields: each version shows its declared `capabilities`, its `strategies`, its
`classification` (experimental / technical_preview / stable, from the conformance ledger) and whether the
deployment can snapshot and branch (`branches`: the runtime's copy-on-write pool); a datastore
shows its default version's `classification`. `.../versions/{version}/capabilities` answers in Trove's
legacy capabilities shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from reddwarf.api import views
from reddwarf.api.deps import AuthDep, BaseUrlDep, ContextDep
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.services import catalog, classification
from reddwarf.services.context import ServiceContext

router = APIRouter(prefix="/datastores", tags=["datastores"])


def _datastore(ctx: ServiceContext, datastore: catalog.Datastore, base: str, project_id: str, is_admin: bool) -> (
    dict[str, Any]
):
    default = datastore.default_version
    level = classification.classify(ctx, default).level if default is not None else None
    return views.datastore_view(datastore, base=base, project_id=project_id, is_admin=is_admin,
                                classification=level)


def _version(ctx: ServiceContext, version: DatastoreVersion, base: str, project_id: str) -> dict[str, Any]:
    return views.datastore_version_view(
        version, base=base, project_id=project_id, status=classification.version_status(ctx, version),
        branch_refusal=ctx.branch_refusal,
    )


@router.get("", summary="List datastores")
def list_datastores(ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    datastores = catalog.list_datastores(ctx, include_inactive=auth.is_admin)
    return {"datastores": [_datastore(ctx, d, base, auth.project_id, auth.is_admin) for d in datastores]}


# Registered before "/{datastore}/..." so that "versions" is never taken for a datastore name.
@router.get("/versions/{version_id}", summary="Show a datastore version by id")
def show_version_by_id(version_id: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    version = catalog.get_version_by_id(ctx, version_id, include_inactive=auth.is_admin)
    return {"version": _version(ctx, version, base, auth.project_id)}


@router.get("/{datastore}", summary="Show a datastore (by id or name)")
def show_datastore(datastore: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    found = catalog.get_datastore(ctx, datastore, include_inactive=auth.is_admin)
    return {"datastore": _datastore(ctx, found, base, auth.project_id, auth.is_admin)}


@router.get("/{datastore}/versions", summary="List the versions of a datastore")
def list_versions(datastore: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    found = catalog.get_datastore(ctx, datastore, include_inactive=auth.is_admin)
    return {"versions": [_version(ctx, v, base, auth.project_id) for v in found.versions]}


@router.get("/{datastore}/versions/{version}", summary="Show a datastore version (by id or name)")
def show_version(
    datastore: str, version: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep
) -> dict[str, Any]:
    found = catalog.get_version(ctx, datastore, version, include_inactive=auth.is_admin)
    return {"version": _version(ctx, found, base, auth.project_id)}


@router.get(
    "/{datastore}/versions/{version}/capabilities", summary="List what a datastore version can do (Trove's shape)"
)
def list_capabilities(datastore: str, version: str, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    found = catalog.get_version(ctx, datastore, version, include_inactive=auth.is_admin)
    return views.capabilities_view(found, classification.version_status(ctx, found))

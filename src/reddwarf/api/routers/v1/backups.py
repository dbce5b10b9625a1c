"""`/v1.0/{project_id}/backups`, `/instances/{id}/backups` and `/backup_strategies` (Trove's wire format).

Extension fields of the backup view: `progress` (`bytes_done` of the tool's stream and the `phase`) while it
runs, `uncompressed_size` (GB), `fault` when it failed, and `verified`, `verified_at`, `verification` (the
verdict of a verification, `REDDWARF_VERIFY_BACKUPS`; null until one ended).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from reddwarf.api import views
from reddwarf.api.deps import AuthDep, BaseUrlDep, ContextDep
from reddwarf.api.schemas.v1.backups import BackupCreateBody, BackupStrategyBody
from reddwarf.services import backups
from reddwarf.services.backups import BackupPage

router = APIRouter(tags=["backups"])

LimitQuery = Annotated[int | None, Query(ge=1, description="Page size (capped by the server's page size).")]
MarkerQuery = Annotated[str | None, Query(description="Id of the last backup of the previous page.")]


def _page(request: Request, base: str, page: BackupPage) -> dict[str, Any]:
    body: dict[str, Any] = {"backups": [views.backup_view(b) for b in page.items]}
    if page.next_marker is not None:
        params = {k: v for k, v in request.query_params.items() if k not in ("marker", "limit")}
        params.update(limit=str(len(page.items)), marker=page.next_marker)
        body["links"] = [{"rel": "next", "href": f"{base}{request.url.path}?{urlencode(params)}"}]
    return body


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes", "")


@router.get("/backups", summary="List backups")
def list_backups(
    request: Request, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep, limit: LimitQuery = None,
    marker: MarkerQuery = None, instance_id: str | None = None, datastore: str | None = None,
    all_projects: str | None = None,
) -> dict[str, Any]:
    page = backups.list_backups(
        ctx, auth, instance_id=instance_id, datastore=datastore, all_projects=_flag(all_projects), limit=limit,
        marker=marker,
    )
    return _page(request, base, page)


@router.post(
    "/backups", status_code=202, summary="Create a backup",
    description="Records the backup (status NEW) and a durable backup operation; answers 202 at once.",
)
def create_backup(body: BackupCreateBody, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    return {"backup": views.backup_view(backups.create(ctx, auth, body.backup.to_request()))}


@router.get("/backups/{backup_id}", summary="Show a backup")
def show_backup(backup_id: str, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    return {"backup": views.backup_view(backups.get(ctx, auth, backup_id))}


@router.delete(
    "/backups/{backup_id}", status_code=202, response_class=Response, summary="Delete a backup",
    description="Deletes its incremental descendants first, as Trove; a backup still being taken answers 422.",
)
def delete_backup(backup_id: str, ctx: ContextDep, auth: AuthDep) -> Response:
    backups.delete(ctx, auth, backup_id)
    return Response(status_code=202)


@router.get("/instances/{instance_id}/backups", summary="List an instance's backups")
def list_instance_backups(
    instance_id: str, request: Request, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep, limit: LimitQuery = None,
    marker: MarkerQuery = None,
) -> dict[str, Any]:
    return _page(request, base, backups.list_backups(ctx, auth, instance_id=instance_id, limit=limit, marker=marker))


@router.get("/backup_strategies", summary="List backup strategies (default containers)")
def list_strategies(
    ctx: ContextDep, auth: AuthDep, instance_id: str | None = None, project_id: str | None = None
) -> dict[str, Any]:
    found = backups.list_strategies(ctx, auth, instance_id=instance_id, project_id=project_id)
    return {"backup_strategies": [views.strategy_view(s) for s in found]}


@router.post("/backup_strategies", summary="Set a default container for a project or an instance")
def create_strategy(body: BackupStrategyBody, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    strategy = backups.put_strategy(
        ctx, auth, container=body.backup_strategy.swift_container, instance_id=body.backup_strategy.instance_id
    )
    return {"backup_strategy": views.strategy_view(strategy)}


@router.delete("/backup_strategies", status_code=202, response_class=Response, summary="Delete a backup strategy")
def delete_strategy(
    ctx: ContextDep, auth: AuthDep, instance_id: str | None = None, project_id: str | None = None
) -> Response:
    backups.delete_strategy(ctx, auth, instance_id=instance_id, project_id=project_id)
    return Response(status_code=202)

"""`/v1.0/{project_id}/instances/{id}/snapshots` and `/snapshots` (Reddwarf's extension; docs/branches.md):
crash-consistent snapshots of an instance's volume, taken in a fraction of a second, from which branches are
made (`restorePoint: {"snapshotRef": ...}`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from reddwarf.api import views
from reddwarf.api.deps import AuthDep, ContextDep
from reddwarf.api.schemas.v1.snapshots import SnapshotCreateBody
from reddwarf.services import snapshots

router = APIRouter(tags=["snapshots"])

LimitQuery = Annotated[int | None, Query(ge=1, description="Page size (capped by the server's page size).")]
MarkerQuery = Annotated[str | None, Query(description="Id of the last snapshot of the previous page.")]


@router.post(
    "/instances/{instance_id}/snapshots", status_code=202, summary="Take a snapshot of an instance",
    description="Records the snapshot (status NEW) and a durable operation; it is COMPLETED within a second or "
    "so (the instance's writes pause for a fraction of it).",
)
def create_snapshot(instance_id: str, body: SnapshotCreateBody, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    made = snapshots.create(ctx, auth, instance_id, body.snapshot.name, body.snapshot.description)
    return {"snapshot": views.snapshot_view(made)}


@router.get("/instances/{instance_id}/snapshots", summary="List an instance's snapshots")
def list_instance_snapshots(
    instance_id: str, ctx: ContextDep, auth: AuthDep, limit: LimitQuery = None, marker: MarkerQuery = None
) -> dict[str, Any]:
    found = snapshots.list_snapshots(ctx, auth, instance_id, limit=limit, marker=marker)
    return {"snapshots": [views.snapshot_view(s) for s in found]}


@router.get("/snapshots", summary="List snapshots")
def list_snapshots(
    ctx: ContextDep, auth: AuthDep, limit: LimitQuery = None, marker: MarkerQuery = None
) -> dict[str, Any]:
    return {"snapshots": [views.snapshot_view(s) for s in snapshots.list_snapshots(ctx, auth, limit=limit,
                                                                                     marker=marker)]}


@router.get("/snapshots/{snapshot_id}", summary="Show a snapshot")
def show_snapshot(snapshot_id: str, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    return {"snapshot": views.snapshot_view(snapshots.get(ctx, auth, snapshot_id))}


@router.delete("/snapshots/{snapshot_id}", status_code=202, response_class=Response, summary="Delete a snapshot")
def delete_snapshot(snapshot_id: str, ctx: ContextDep, auth: AuthDep) -> Response:
    snapshots.delete(ctx, auth, snapshot_id)
    return Response(status_code=202)

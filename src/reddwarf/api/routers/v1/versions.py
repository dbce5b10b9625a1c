"""Public root routes: the version documents and the health check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from reddwarf.api import views
from reddwarf.api.deps import BaseUrlDep, ContextDep
from reddwarf.services.health import store_reachable

router = APIRouter(tags=["versions"])


@router.get("/", summary="List API versions")
def list_versions(base: BaseUrlDep) -> dict[str, Any]:
    return {"versions": [views.version_body(base)]}


@router.get("/v1.0/", summary="Show API version v1.0")
def show_version(base: BaseUrlDep) -> dict[str, Any]:
    return {"version": views.version_body(base)}


@router.get(
    "/healthcheck",
    summary="Health check",
    description="200 `OK` when the metadata store answers; 503 when it does not.",
    response_class=PlainTextResponse,
    tags=["health"],
)
def healthcheck(ctx: ContextDep) -> PlainTextResponse:
    if store_reachable(ctx):
        return PlainTextResponse("OK")
    return PlainTextResponse("Service Unavailable", status_code=503)

"""The application factory: `create_app(ctx)` wires routers, the error mapping and the request boundary.

Public routes: `/`, `/v1.0/`, `/healthcheck`, `/openapi.json` and `/docs`; every route under
`/v1.0/{project_id}` needs `X-Auth-Token` (see `deps.get_auth`).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI

import reddwarf
from reddwarf.api.errors import install_error_handlers
from reddwarf.api.guard import RequestGuard
from reddwarf.api.middleware import RequestBoundary
from reddwarf.api.routers.v1 import (
    backups,
    databases,
    datastores,
    flavors,
    instances,
    mgmt,
    root,
    snapshots,
    users,
    versions,
)
from reddwarf.services.context import ServiceContext

logger = logging.getLogger(__name__)

OPENAPI_TAGS = [
    {"name": "versions", "description": "API versions (public)."},
    {"name": "health", "description": "Liveness of the API and its metadata store (public)."},
    {"name": "instances", "description": "Database instances: create, list, show, update, delete, actions."},
    {"name": "datastores", "description": "Datastores and their installed versions."},
    {"name": "flavors", "description": "Instance sizes defined by the operator."},
    {"name": "databases", "description": "Databases inside an instance (live reads, durable writes)."},
    {"name": "users", "description": "Users of an instance and their database grants (live reads, durable writes)."},
    {"name": "root", "description": "The engine's superuser: status, enable (synchronous), disable."},
    {"name": "mgmt", "description": "Management API (admin only)."},
]


def create_app(ctx: ServiceContext) -> FastAPI:
    """A new application serving `ctx`. Nothing is global: two apps may serve two contexts side by side."""
    app = FastAPI(
        title="Reddwarf",
        summary="Database as a Service control plane speaking OpenStack Trove's v1.0 API.",
        version=reddwarf.__version__,
        openapi_tags=OPENAPI_TAGS,
        docs_url="/docs",
        redoc_url=None,
    )
    if ctx.settings.identity == "keystone" and ctx.authenticator is None:
        raise ValueError("identity=keystone needs ServiceContext.authenticator (see reddwarf.wiring.authenticator)")
    app.state.reddwarf = ctx
    install_error_handlers(app)
    # Added first, so it runs inside the request boundary (its answers get a request id), before any route.
    app.add_middleware(RequestGuard, ctx=ctx)
    app.add_middleware(RequestBoundary)

    app.include_router(versions.router)
    project = APIRouter(prefix="/v1.0/{project_id}")
    project.include_router(instances.router)
    project.include_router(datastores.router)
    project.include_router(flavors.router)
    project.include_router(databases.router)
    project.include_router(users.router)
    project.include_router(root.router)
    project.include_router(mgmt.router)
    project.include_router(backups.router)
    project.include_router(snapshots.router)
    app.include_router(project)

    if ctx.settings.identity == "noauth":
        logger.warning(
            "IDENTITY IS DISABLED (identity=noauth): every request is an admin of the project in its path. "
            "Development only; never expose this server."
        )
    return app

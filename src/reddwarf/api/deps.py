"""Typed dependencies: the service context, and the caller authenticated for the path's project.

Authentication (done by `guard.RequestGuard` before the body is read, and reused here): `X-Auth-Token` ->
`identity.tokens.authenticate` (401 when missing, unknown, expired or
revoked), then the `{project_id}` of the path must be the token's project (403 otherwise, admins
included, as Trove's `TenantBasedAuth`). With `Settings.identity == "keystone"` the token goes to
`ServiceContext.authenticator` instead (`identity.keystone`: 401, or 503 when Keystone cannot answer); it
never falls back to builtin tokens. With `Settings.identity == "noauth"` (development only) every
request is an admin of the path's project.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from reddwarf.domain.errors import Forbidden, ServiceUnavailable
from reddwarf.identity.context import ADMIN_ROLE, AuthContext
from reddwarf.identity.tokens import authenticate
from reddwarf.services.context import ServiceContext

TOKEN_HEADER = APIKeyHeader(
    name="X-Auth-Token", auto_error=False, description="A Reddwarf token (or, with noauth, anything)."
)


async def get_context(request: Request) -> ServiceContext:
    # `async` (as `base_url`): no I/O, so FastAPI runs it on the event loop instead of a thread-pool hop.
    ctx = request.app.state.reddwarf
    assert isinstance(ctx, ServiceContext)
    return ctx


ContextDep = Annotated[ServiceContext, Depends(get_context)]


# Where `guard.RequestGuard` leaves the caller it authenticated, in the ASGI scope's state.
STATE_AUTH = "reddwarf_auth"


def resolve_auth(ctx: ServiceContext, project_id: str, token: str | None) -> AuthContext:
    """The caller of `token` for the path's project (blocking: a store or Keystone lookup).

    401 when the token is missing, unknown, expired or revoked; 403 when it belongs to another project; 503
    when identity=keystone cannot answer."""
    if ctx.settings.identity == "noauth":
        return AuthContext.for_roles(project_id, (ADMIN_ROLE,))
    if ctx.settings.identity == "keystone":
        if ctx.authenticator is None:
            raise ServiceUnavailable("identity=keystone but no Keystone authenticator is configured.")
        auth = ctx.authenticator(token)
    else:
        auth = authenticate(ctx.db, token, now=ctx.clock())
    if auth.project_id != project_id:
        raise Forbidden(f"User does not have admin privileges or is not a member of project {project_id}.")
    return auth


async def get_auth(
    request: Request,
    ctx: ContextDep,
    project_id: Annotated[str, Path(description="The project (tenant) id; must be the token's project.")],
    token: Annotated[str | None, Security(TOKEN_HEADER)],
) -> AuthContext:
    """The caller, as `guard.RequestGuard` authenticated it before the body was read (else authenticated now)."""
    found = request.scope.get("state", {}).get(STATE_AUTH)
    if isinstance(found, AuthContext) and found.project_id == project_id:
        return found
    return await run_in_threadpool(resolve_auth, ctx, project_id, token)


AuthDep = Annotated[AuthContext, Depends(get_auth)]

_DEFAULT_PORTS = {"http": 80, "https": 443}


async def base_url(request: Request, ctx: ContextDep) -> str:
    """The URL links are built from: `Settings.public_url` when set, else the address this connection
    arrived at (the server socket's own address, which the ASGI server reports), else the configured listening
    address. Never the request's `Host` header: a client chooses that, and links would send the next client
    (and its token) wherever it said."""
    if ctx.settings.public_url:
        return ctx.settings.public_url.rstrip("/")
    scheme = str(request.scope.get("scheme") or "http")
    server = request.scope.get("server")
    host, port = (server[0], server[1]) if server and server[1] is not None else (ctx.settings.host, ctx.settings.port)
    host = f"[{host}]" if ":" in str(host) else str(host)
    return f"{scheme}://{host}" if port == _DEFAULT_PORTS.get(scheme) else f"{scheme}://{host}:{port}"


BaseUrlDep = Annotated[str, Depends(base_url)]

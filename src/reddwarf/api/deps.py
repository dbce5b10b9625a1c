"""Typed dependencies: the service context, and the caller authenticated for the path's project.

Authentication: `X-Auth-Token` -> `identity.tokens.authenticate` (401 when missing, unknown, expired or
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


def get_auth(
    ctx: ContextDep,
    project_id: Annotated[str, Path(description="The project (tenant) id; must be the token's project.")],
    token: Annotated[str | None, Security(TOKEN_HEADER)],
) -> AuthContext:
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


AuthDep = Annotated[AuthContext, Depends(get_auth)]


async def base_url(request: Request, ctx: ContextDep) -> str:
    """The URL links are built from: `Settings.public_url` when set, else the request's own base."""
    return (ctx.settings.public_url or str(request.base_url)).rstrip("/")


BaseUrlDep = Annotated[str, Depends(base_url)]

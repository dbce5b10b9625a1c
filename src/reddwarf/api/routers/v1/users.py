"""`/v1.0/{project_id}/instances/{instance_id}/users`: Trove's user and grant routes.

The `{user}` segment is `name` or URL-encoded `name@host` (host `%` when absent), as troveclient's
`quote_user_host` sends it. Reads go live to the engine; writes record a durable operation and answer 202
with no body. Reddwarf's own admin account is never listed and answers 404 by name.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from reddwarf.api.deps import AuthDep, BaseUrlDep, ContextDep
from reddwarf.api.routers.v1.databases import LimitQuery, MarkerQuery, next_links
from reddwarf.api.schemas.v1.accounts import GrantBody, UsersCreateBody, UsersPasswordBody, UserUpdateBody
from reddwarf.domain.accounts import UserInfo
from reddwarf.services import accounts

router = APIRouter(prefix="/instances/{instance_id}/users", tags=["users"])


def user_view(user: UserInfo) -> dict[str, Any]:
    """Trove's user view: name, host and the databases it may use (`[{"name"}]`)."""
    return {"name": user.name, "host": user.host, "databases": access_view(user.databases)}


def access_view(databases: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    return [{"name": name} for name in sorted(databases)]


@router.get("", summary="List the users of an instance (live)")
def list_users(
    instance_id: str, request: Request, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep,
    limit: LimitQuery = None, marker: MarkerQuery = None,
) -> dict[str, Any]:
    page = accounts.list_users(ctx, auth, instance_id, limit=limit, marker=marker)
    body: dict[str, Any] = {"users": [user_view(u) for u in page.items]}
    links = next_links(request, base, page.next_marker, len(page.items))
    if links:
        body["links"] = links
    return body


@router.post(
    "", status_code=202, response_class=Response, summary="Create users",
    description="Each user with a password, an optional host and databases to grant; 400 for a user that exists.",
)
def create_users(instance_id: str, body: UsersCreateBody, ctx: ContextDep, auth: AuthDep) -> Response:
    accounts.create_users(ctx, auth, instance_id, body.specs())
    return Response(status_code=202)


@router.put(
    "", status_code=202, response_class=Response, summary="Change the passwords of several users",
    description="Every user must exist (404 otherwise).",
)
def change_passwords(instance_id: str, body: UsersPasswordBody, ctx: ContextDep, auth: AuthDep) -> Response:
    accounts.change_passwords(ctx, auth, instance_id, body.specs())
    return Response(status_code=202)


@router.get("/{user}", summary="Show one user (live)")
def show_user(instance_id: str, user: str, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    name, host = accounts.parse_user_ref(user)
    return {"user": user_view(accounts.get_user(ctx, auth, instance_id, name, host))}


@router.put(
    "/{user}", status_code=202, response_class=Response, summary="Update a user's name, password or host",
    description="Renaming onto an existing user is refused with 400, as Trove.",
)
def update_user(instance_id: str, user: str, body: UserUpdateBody, ctx: ContextDep, auth: AuthDep) -> Response:
    name, host = accounts.parse_user_ref(user)
    accounts.update_user(ctx, auth, instance_id, name, host, body.update())
    return Response(status_code=202)


@router.delete("/{user}", status_code=202, response_class=Response, summary="Drop a user")
def delete_user(instance_id: str, user: str, ctx: ContextDep, auth: AuthDep) -> Response:
    name, host = accounts.parse_user_ref(user)
    accounts.delete_user(ctx, auth, instance_id, name, host)
    return Response(status_code=202)


@router.get("/{user}/databases", summary="List the databases a user may use (live)")
def list_access(instance_id: str, user: str, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    name, host = accounts.parse_user_ref(user)
    return {"databases": access_view(list(accounts.list_access(ctx, auth, instance_id, name, host)))}


@router.put(
    "/{user}/databases", status_code=202, response_class=Response, summary="Grant a user access to databases",
    description="The user and every database must exist (404 otherwise).",
)
def grant_access(instance_id: str, user: str, body: GrantBody, ctx: ContextDep, auth: AuthDep) -> Response:
    name, host = accounts.parse_user_ref(user)
    accounts.grant(ctx, auth, instance_id, name, host, body.names())
    return Response(status_code=202)


@router.delete(
    "/{user}/databases/{database}", status_code=202, response_class=Response,
    summary="Revoke a user's access to a database",
    description="404 when the user does not exist or has no access to the database.",
)
def revoke_access(instance_id: str, user: str, database: str, ctx: ContextDep, auth: AuthDep) -> Response:
    name, host = accounts.parse_user_ref(user)
    accounts.revoke(ctx, auth, instance_id, name, host, database)
    return Response(status_code=202)

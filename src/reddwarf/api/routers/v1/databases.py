"""`/v1.0/{project_id}/instances/{instance_id}/databases`: Trove's database routes (list, create, show, delete).

Lists and shows are live reads of the engine; create and delete record a durable operation and answer
202 with no body, as Trove. Redis has no databases: every route answers 400 saying so.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from reddwarf.api.deps import AuthDep, BaseUrlDep, ContextDep
from reddwarf.api.schemas.v1.accounts import DatabasesCreateBody
from reddwarf.domain.instance import DatabaseSpec
from reddwarf.services import accounts

router = APIRouter(prefix="/instances/{instance_id}/databases", tags=["databases"])

LimitQuery = Annotated[int | None, Query(ge=1, description="Page size (capped by the server's page size).")]
MarkerQuery = Annotated[str | None, Query(description="The last item of the previous page (exclusive).")]


def next_links(request: Request, base: str, next_marker: str | None, count: int) -> list[dict[str, str]]:
    """Trove's pagination: one `next` link carrying `limit` and `marker`, when there is a next page."""
    if next_marker is None:
        return []
    params = {k: v for k, v in request.query_params.items() if k not in ("marker", "limit")}
    params.update(limit=str(count), marker=next_marker)
    return [{"rel": "next", "href": f"{base}{request.url.path}?{urlencode(params)}"}]


def database_view(database: DatabaseSpec, *, detail: bool = False) -> dict[str, Any]:
    """Trove's schema view (`{"name"}`); the show route adds the character set and collation it knows."""
    body: dict[str, Any] = {"name": database.name}
    if detail:
        if database.character_set is not None:
            body["character_set"] = database.character_set
        if database.collate is not None:
            body["collate"] = database.collate
    return body


@router.get("", summary="List the databases of an instance (live)")
def list_databases(
    instance_id: str, request: Request, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep,
    limit: LimitQuery = None, marker: MarkerQuery = None,
) -> dict[str, Any]:
    page = accounts.list_databases(ctx, auth, instance_id, limit=limit, marker=marker)
    body: dict[str, Any] = {"databases": [database_view(d) for d in page.items]}
    links = next_links(request, base, page.next_marker, len(page.items))
    if links:
        body["links"] = links
    return body


@router.post(
    "",
    status_code=202,
    response_class=Response,
    summary="Create databases",
    description="Checks every name (engine rules, duplicates: 400), records a durable operation, answers 202.",
)
def create_databases(instance_id: str, body: DatabasesCreateBody, ctx: ContextDep, auth: AuthDep) -> Response:
    accounts.create_databases(ctx, auth, instance_id, body.specs())
    return Response(status_code=202)


@router.get("/{name}", summary="Show one database (live)")
def show_database(instance_id: str, name: str, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    return {"database": database_view(accounts.get_database(ctx, auth, instance_id, name), detail=True)}


@router.delete(
    "/{name}", status_code=202, response_class=Response, summary="Drop a database",
    description="404 when the database does not exist; otherwise a durable operation drops it (202).",
)
def delete_database(instance_id: str, name: str, ctx: ContextDep, auth: AuthDep) -> Response:
    accounts.delete_database(ctx, auth, instance_id, name)
    return Response(status_code=202)

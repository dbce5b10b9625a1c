"""`/v1.0/{project_id}/instances`: create, list, show, rename, delete and actions (Trove's wire format)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Query, Request, Response

from reddwarf.api import views
from reddwarf.api.deps import AuthDep, BaseUrlDep, ContextDep
from reddwarf.api.schemas.v1.instances import InstanceCreateBody, InstanceUpdateBody
from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import Instance
from reddwarf.identity.context import AuthContext
from reddwarf.services import catalog, instances, replicas
from reddwarf.services.context import ServiceContext

router = APIRouter(prefix="/instances", tags=["instances"])

SUPPORTED_ACTIONS = ("restart", "reset_status", "promote_to_replica_source", "eject_replica_source")

LimitQuery = Annotated[int | None, Query(ge=1, description="Page size (capped by the server's page size).")]
MarkerQuery = Annotated[str | None, Query(description="Id of the last instance of the previous page.")]
ClusteredQuery = Annotated[str | None, Query(description="Accepted and ignored (no clusters yet).")]


def _view(ctx: ServiceContext, auth: AuthContext, base: str, instance: Instance, *, detail: bool) -> dict[str, Any]:
    number = catalog.version_number(ctx, instance.spec.datastore, instance.spec.datastore_version)
    return views.instance_view(
        instance, base=base, version_number=number, region=ctx.region, detail=detail, is_admin=auth.is_admin
    )


def _list(
    request: Request, ctx: ServiceContext, auth: AuthContext, base: str,
    limit: int | None, marker: str | None, *, detail: bool,
) -> dict[str, Any]:
    page = instances.list_instances(ctx, auth, limit=limit, marker=marker)
    body: dict[str, Any] = {"instances": [_view(ctx, auth, base, i, detail=detail) for i in page.items]}
    if page.next_marker is not None:
        params = {k: v for k, v in request.query_params.items() if k not in ("marker", "limit")}
        params.update(limit=str(len(page.items)), marker=page.next_marker)
        body["links"] = [{"rel": "next", "href": f"{base}{request.url.path}?{urlencode(params)}"}]
    return body


@router.get("", summary="List instances (summary view)")
def list_instances(
    request: Request, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep,
    limit: LimitQuery = None, marker: MarkerQuery = None, include_clustered: ClusteredQuery = None,
) -> dict[str, Any]:
    return _list(request, ctx, auth, base, limit, marker, detail=False)


@router.get("/detail", summary="List instances (detail view)")
def list_instances_detail(
    request: Request, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep,
    limit: LimitQuery = None, marker: MarkerQuery = None, include_clustered: ClusteredQuery = None,
) -> dict[str, Any]:
    return _list(request, ctx, auth, base, limit, marker, detail=True)


@router.post(
    "",
    summary="Create an instance",
    description="Records the instance (status BUILD) and a durable create operation; answers 200 at once.",
)
def create_instance(
    body: InstanceCreateBody, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep
) -> dict[str, Any]:
    request = body.instance.to_request()
    if request.replica_of is not None:
        instance, root_password = replicas.create(ctx, auth, request), None
    else:
        instance, root_password = instances.create(ctx, auth, request)
    view = _view(ctx, auth, base, instance, detail=True)
    if root_password is not None:
        # Trove shows the root password in the create response only, with root_on_create, once.
        view["password"] = root_password.reveal()
    return {"instance": view}


@router.get("/{instance_id}", summary="Show an instance (detail view)")
def show_instance(instance_id: str, ctx: ContextDep, auth: AuthDep, base: BaseUrlDep) -> dict[str, Any]:
    return {"instance": _view(ctx, auth, base, instances.get(ctx, auth, instance_id), detail=True)}


@router.get(
    "/{instance_id}/events",
    summary="What happened to an instance (extension)",
    description="Reddwarf extension: requests, status changes and restarts after a crash, oldest first.",
)
def instance_events(instance_id: str, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    return {"events": [views.event_view(e) for e in instances.events(ctx, auth, instance_id)]}


def _update(instance_id: str, body: InstanceUpdateBody, ctx: ServiceContext, auth: AuthContext) -> Response:
    unsupported = body.instance.unsupported_fields()
    if unsupported:
        field = unsupported[0]
        raise BadRequest(f"Updating instance.{field} is not supported yet by Reddwarf.", field=field)
    name = body.instance.name
    if name is not None:
        instances.validate_name(name)  # before the detach is recorded: a refused body changes nothing
    if body.instance.detach and body.instance.replication is not None:
        raise BadRequest("A detach and a replication policy cannot be asked for at once: a detached instance "
                         "belongs to no set.", field="replication")
    if body.instance.detach:
        replicas.detach(ctx, auth, instance_id)
    if body.instance.replication is not None:
        replicas.set_policy(ctx, auth, instance_id, body.instance.replication.to_change())
    if name is not None:
        instances.rename(ctx, auth, instance_id, name)
    if name is None and not body.instance.detach and body.instance.replication is None:
        instances.get(ctx, auth, instance_id)
    return Response(status_code=202)


@router.put(
    "/{instance_id}",
    status_code=202,
    response_class=Response,
    summary="Update an instance",
    description="`name`, the detach of a replica (`replica_of` or `slave_of` present, any value), and (extension) "
    "a replication set's policy on its primary (`replication`: `mode`, `auto_failover`); any other attribute is "
    "refused with 400 naming it.",
)
def update_instance(instance_id: str, body: InstanceUpdateBody, ctx: ContextDep, auth: AuthDep) -> Response:
    return _update(instance_id, body, ctx, auth)


@router.patch(
    "/{instance_id}", status_code=202, response_class=Response, summary="Edit an instance (deprecated alias of PUT)"
)
def edit_instance(instance_id: str, body: InstanceUpdateBody, ctx: ContextDep, auth: AuthDep) -> Response:
    return _update(instance_id, body, ctx, auth)


@router.delete(
    "/{instance_id}",
    status_code=202,
    response_class=Response,
    summary="Delete an instance",
    description="Idempotent: deleting an instance that is already being deleted answers 202 again.",
)
def delete_instance(instance_id: str, ctx: ContextDep, auth: AuthDep) -> Response:
    instances.delete(ctx, auth, instance_id)
    return Response(status_code=202)


@router.post(
    "/{instance_id}/action",
    status_code=202,
    response_class=Response,
    summary="Run an action on an instance",
    description=(
        'Exactly one key: `{"restart": {}}` (the instance must be ACTIVE, else 422), '
        '`{"reset_status": {}}` (admin only: clears the fault and requests a reconcile) or '
        '`{"promote_to_replica_source": {}}` (a replica becomes its set\'s primary: a switchover) or '
        '`{"eject_replica_source": {}}` (on a source unhealthy for `eject_after` seconds: a failover).'
    ),
)
def instance_action(
    instance_id: str, body: Annotated[dict[str, Any], Body()], ctx: ContextDep, auth: AuthDep
) -> Response:
    if len(body) != 1:
        raise BadRequest("An action body must have exactly one key (the action name).", field="action")
    (action,) = body
    if action == "restart":
        instances.restart(ctx, auth, instance_id)
    elif action == "reset_status":
        instances.reset_status(ctx, auth, instance_id)
    elif action == "promote_to_replica_source":
        replicas.promote(ctx, auth, instance_id)
    elif action == "eject_replica_source":
        replicas.eject(ctx, auth, instance_id)
    else:
        raise BadRequest(
            f"Action {action} is not supported; supported actions: {', '.join(SUPPORTED_ACTIONS)}.", field=action
        )
    return Response(status_code=202)

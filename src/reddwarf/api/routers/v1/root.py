"""`/v1.0/{project_id}/instances/{instance_id}/root`: Trove's root routes (status, enable, disable).

Enable is synchronous and answers 200 with the password, once (Trove's `RootCreatedView`); disable
answers 204. Enabling root is recorded: see `/mgmt/instances/{id}/root` and the health sweep.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from reddwarf.api.deps import AuthDep, ContextDep
from reddwarf.api.schemas.v1.accounts import RootEnableBody
from reddwarf.domain.secret import Secret
from reddwarf.services import accounts

router = APIRouter(prefix="/instances/{instance_id}/root", tags=["root"])


@router.get("", summary="Is root enabled? (live)")
def root_status(instance_id: str, ctx: ContextDep, auth: AuthDep) -> dict[str, Any]:
    return {"rootEnabled": accounts.root_enabled(ctx, auth, instance_id)}


@router.post(
    "", summary="Enable root",
    description='Optional body `{"password": "..."}`; without it a password is generated. '
    "Answers the superuser's name and password; the password is not stored and never shown again.",
)
def enable_root(
    instance_id: str, ctx: ContextDep, auth: AuthDep, body: Annotated[RootEnableBody | None, Body()] = None
) -> dict[str, Any]:
    password = None if body is None or body.password is None else Secret(body.password)
    credential = accounts.enable_root(ctx, auth, instance_id, password)
    return {"user": {"name": credential.name, "password": credential.password.reveal()}}


@router.delete("", status_code=204, response_class=Response, summary="Disable root")
def disable_root(instance_id: str, ctx: ContextDep, auth: AuthDep) -> Response:
    accounts.disable_root(ctx, auth, instance_id)
    return Response(status_code=204)

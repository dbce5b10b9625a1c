"""The one error mapping: Trove fault bodies, and validation messages that name the field and the reason."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from reddwarf.api.errors import describe_validation_errors, fault_response, field_path
from reddwarf.api.schemas.v1.instances import InstanceCreateBody
from reddwarf.domain.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    OverLimit,
    RequestError,
    Unauthorized,
    UnprocessableEntity,
)


@pytest.mark.parametrize(
    ("error", "status", "fault"),
    [
        (BadRequest("bad", "x"), 400, "badRequest"),
        (Unauthorized("who?"), 401, "unauthorized"),
        (Forbidden("no"), 403, "forbidden"),
        (NotFound("Instance", "abc"), 404, "itemNotFound"),
        (Conflict("busy"), 409, "conflictingRequest"),
        (OverLimit("quota"), 413, "overLimit"),
        (UnprocessableEntity("not now"), 422, "unprocessableEntity"),
    ],
)
def test_request_errors_become_trove_fault_bodies(error: RequestError, status: int, fault: str) -> None:
    response = fault_response(error.status, error.message, error.fault)

    assert response.status_code == status
    assert json.loads(bytes(response.body)) == {fault: {"code": status, "message": error.message}}


def test_fault_names_default_from_the_status() -> None:
    assert list(json.loads(bytes(fault_response(405, "m").body))) == ["badMethod"]
    assert list(json.loads(bytes(fault_response(500, "m").body))) == ["instanceFault"]


def test_field_paths_drop_the_source_and_index_lists() -> None:
    assert field_path(("body", "instance", "users", 0, "password")) == "instance.users[0].password"
    assert field_path(("query", "limit")) == "limit"


def _errors(body: object) -> str:
    with pytest.raises(ValidationError) as caught:
        InstanceCreateBody.model_validate(body)
    errors = [dict(e, loc=("body", *e["loc"])) for e in caught.value.errors()]
    return describe_validation_errors(errors)


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        ({"flavorRef": "1"}, "instance.name is required"),
        ({"name": "a", "flavorRef": "1", "volume": {"size": "ten"}}, "instance.volume.size must be an integer"),
        ({"name": "a", "flavorRef": "1", "bogus": 1}, "instance.bogus is not a recognised attribute"),
        ({"name": "a", "flavorRef": "1", "users": [{"name": "u"}]}, "instance.users[0].password is required"),
        ({"name": "a", "flavorRef": {"id": 1}}, "instance.flavorRef must be a flavor id"),
        ({"name": "a", "flavorRef": "1", "nics": [{}, {}]}, "instance.nics must have at most 1 item(s)"),
    ],
)
def test_validation_messages_name_the_field_and_the_reason(instance: dict[str, object], expected: str) -> None:
    message = _errors({"instance": instance})

    assert message.startswith("Validation error: ")
    assert expected in message


def test_invalid_json_is_described_as_malformed() -> None:
    errors = [{"type": "json_invalid", "loc": ("body", 5), "msg": "JSON decode error"}]

    assert describe_validation_errors(errors) == "Malformed request body: the body is not valid JSON."

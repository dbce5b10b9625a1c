"""The one error mapping: every refusal leaves the API as a Trove fault body.

`{"<fault>": {"code": <status>, "message": "..."}}` where fault and status come from the
`RequestError` class (`badRequest` 400, `unauthorized` 401, `forbidden` 403, `itemNotFound` 404,
`unprocessableEntity` 422, ...). Request validation errors become 400 `badRequest` naming the field and
the reason (never FastAPI's 422 `detail`), unknown routes 404 `itemNotFound`, a wrong method 405
`badMethod`. Unexpected exceptions are turned into 500 `instanceFault` by `middleware.RequestBoundary`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from reddwarf.domain.errors import RequestError

logger = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE: Final = (
    "The server has either erred or is incapable of performing the requested operation."
)

_FAULT_BY_STATUS: Final[Mapping[int, str]] = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    422: "unprocessableEntity",
    500: "instanceFault",
    501: "notImplemented",
    503: "serviceUnavailable",
}

_MESSAGE_BY_STATUS: Final[Mapping[int, str]] = {
    404: "The resource could not be found.",
    405: "The method is not allowed for the requested URL.",
}

# Location parts FastAPI prepends that name where a value came from, not which field it is.
_SOURCES: Final = frozenset({"body", "query", "path", "header", "cookie"})

_REASONS: Final[Mapping[str, str]] = {
    "missing": "is required",
    "extra_forbidden": "is not a recognised attribute (additional properties are not allowed)",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
}


def fault_body(fault: str, status: int, message: str) -> dict[str, dict[str, Any]]:
    return {fault: {"code": status, "message": message}}


def fault_response(status: int, message: str, fault: str | None = None) -> JSONResponse:
    name = fault or _FAULT_BY_STATUS.get(status, "badRequest" if status < 500 else "instanceFault")
    return JSONResponse(fault_body(name, status, message), status_code=status)


def field_path(loc: Sequence[str | int]) -> str:
    """("body", "instance", "users", 0, "password") -> "instance.users[0].password"."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not path and part in _SOURCES:
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def describe_validation_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """One message naming every offending field and why, e.g.
    "Validation error: instance.volume.size must be an integer.". """
    if any(error.get("type") == "json_invalid" for error in errors):
        return "Malformed request body: the body is not valid JSON."
    parts = []
    for error in errors:
        field = field_path(error.get("loc", ()))
        kind = str(error.get("type", ""))
        reason = _bound_reason(kind, error.get("ctx")) or _REASONS.get(kind) or _clean_message(
            str(error.get("msg", "is invalid"))
        )
        if not field:
            parts.append("the request body is required and must be a JSON object" if kind == "missing"
                         else f"the request body {reason}")
        else:
            parts.append(f"{field} {reason}")
    return "Validation error: " + "; ".join(parts) + "."


def _bound_reason(kind: str, ctx: Any) -> str | None:
    """Range errors with the bound pydantic recorded: "must be at least 1", "must have at most 1 item(s)"."""
    if not isinstance(ctx, Mapping):
        return None
    if kind == "greater_than_equal" and "ge" in ctx:
        return f"must be at least {ctx['ge']}"
    if kind == "too_long" and "max_length" in ctx:
        return f"must have at most {ctx['max_length']} item(s)"
    return None


def _clean_message(message: str) -> str:
    """Pydantic's "Value error, must be X" -> "must be X"; "Input should be X" -> "should be X"."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if message.startswith("Input "):
        message = message[len("Input "):]
    return message.rstrip(".")


async def _on_request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    if exc.status >= 500:
        logger.warning("%s %s refused: %s", request.method, request.url.path, exc.message)
    return fault_response(exc.status, exc.message, exc.fault)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return fault_response(400, describe_validation_errors(exc.errors()), "badRequest")


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = _MESSAGE_BY_STATUS.get(exc.status_code) or str(exc.detail)
    response = fault_response(exc.status_code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestError, _on_request_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)

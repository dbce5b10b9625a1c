"""The request boundary: a request id on every response, and the last line of defence against a crash.

Every response carries `X-OpenStack-Request-Id: req-<uuid>` (as Trove's does), errors included. An
exception nothing else handled is logged with its traceback and the request id, and answered with a
generic 500 `instanceFault`: the message never includes the exception text, which may hold internals.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reddwarf.api.errors import INTERNAL_ERROR_MESSAGE, fault_body

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER: Final = "X-OpenStack-Request-Id"


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


class RequestBoundary:
    """Pure ASGI middleware (so it also wraps the error responses of inner middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        started = False
        media_type = _non_json_body(scope)
        if media_type is not None:
            message = f"Unsupported Content-Type {media_type}: request bodies are JSON (application/json)."
            await _send_fault(send, request_id, "badMediaType", 415, message)
            return

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        # The request boundary: whatever escaped the handlers is logged and answered, never re-raised.
        except Exception:
            logger.exception(
                "request %s %s %s failed with an unexpected error", request_id, scope.get("method"),
                scope.get("path"),
            )
            if started:
                return
            await _send_fault(send, request_id, "instanceFault", 500, INTERNAL_ERROR_MESSAGE)


def _non_json_body(scope: Scope) -> str | None:
    """The media type of a body-carrying request that declares something other than JSON, else None.

    A request without a Content-Type is read as JSON (lenient for hand-written clients); one that declares
    a form or text body gets Trove's 415 rather than a confusing "not an object" 400."""
    if scope.get("method") not in ("POST", "PUT", "PATCH"):
        return None
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"content-type":
            media_type = value.decode("latin-1").split(";", 1)[0].strip().lower()
            if media_type and media_type != "application/json" and not media_type.endswith("+json"):
                return media_type
    return None


async def _send_fault(send: Send, request_id: str, fault: str, status: int, message: str) -> None:
    body = json.dumps(fault_body(fault, status, message)).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})

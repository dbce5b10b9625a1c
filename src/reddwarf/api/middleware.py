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
            body = json.dumps(fault_body("instanceFault", 500, INTERNAL_ERROR_MESSAGE)).encode()
            await send({
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                ],
            })
            await send({"type": "http.response.body", "body": body})

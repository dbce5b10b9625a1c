"""The request guard: authentication and the body limit, before any byte of a body is read.

FastAPI reads and parses a request's body before it resolves the route's dependencies, so a check made in a
dependency comes too late: an anonymous client could make the server read and parse megabytes. This pure
ASGI middleware runs first (inside `middleware.RequestBoundary`, which gives its answers a request id):

1. A route under `/v1.0/{project_id}/` is authenticated here (`deps.resolve_auth`: 401, 403 for another
   project, 503 when the identity backend cannot answer) and the result is left in the request's state for
   `deps.get_auth`. A refusal is answered without reading the body.
2. A body announced by `Content-Length` above `Settings.max_request_body_bytes` is answered 413 `overLimit`
   at once, and the connection is closed after the answer (`Connection: close`), so the server receives none
   of it. A body without a length (chunked) is counted as it arrives and cut off with 413 when it passes the
   limit: the application reads no further, and the HTTP server discards what still arrives on that
   connection (no buffer grows) until the client, which has its answer, stops. That connection is not closed
   at once on purpose: closing a socket with unread data sends a TCP reset, which can destroy the 413 before
   the client reads it.
"""

from __future__ import annotations

import json
import logging
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reddwarf.api.deps import STATE_AUTH, resolve_auth
from reddwarf.api.errors import fault_body
from reddwarf.domain.errors import RequestError
from reddwarf.services.context import ServiceContext

logger = logging.getLogger(__name__)

API_PREFIX: Final = "v1.0"
CLOSE: Final = (b"connection", b"close")


def project_of(path: str) -> str | None:
    """The `{project_id}` of a path under `/v1.0/{project_id}/`, else None (public routes: `/`, `/v1.0/`,
    `/healthcheck`, `/openapi.json`, `/docs`, and paths that name no resource of a project)."""
    parts = path.split("/", 3)
    if len(parts) == 4 and parts[0] == "" and parts[1] == API_PREFIX and parts[2] and parts[3]:
        return parts[2]
    return None


def over_limit_message(limit: int) -> str:
    return f"Request body too large: the limit is {limit} bytes."


class RequestGuard:
    """Authenticate, then bound the body; see the module docstring."""

    def __init__(self, app: ASGIApp, ctx: ServiceContext) -> None:
        self.app = app
        self.ctx = ctx
        self.limit = ctx.settings.max_request_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        project = project_of(scope.get("path", ""))
        if project is not None:
            token = headers.get(b"x-auth-token")
            try:
                auth = await run_in_threadpool(
                    resolve_auth, self.ctx, project, None if token is None else token.decode("latin-1")
                )
            except RequestError as exc:
                if exc.status >= 500:
                    logger.warning("%s %s refused: %s", scope.get("method"), scope.get("path"), exc.message)
                await _send_fault(send, exc.fault, exc.status, exc.message, close=_announces_body(headers))
                return
            scope.setdefault("state", {})[STATE_AUTH] = auth
        length = _content_length(headers)
        if length is not None and length > self.limit:
            logger.info("%s %s refused: announced body of %d bytes", scope.get("method"), scope.get("path"), length)
            await _send_fault(send, "overLimit", 413, over_limit_message(self.limit), close=True)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        """`receive`, refusing with 413 once the body received passes the limit (for bodies without a length)."""
        limit = self.limit
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, over_limit_message(limit))
            return message

        return counted


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (the first of repeated ones, as the guard only reads single ones)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.lower(), value)
    return found


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None  # the HTTP server refuses a malformed length before the app sees the request


def _announces_body(headers: dict[bytes, bytes]) -> bool:
    return b"transfer-encoding" in headers or (_content_length(headers) or 0) > 0


async def _send_fault(send: Send, fault: str, status: int, message: str, *, close: bool) -> None:
    """Answer without reading the body; with `close`, close the connection after the answer, so that the
    server stops receiving a body nobody will read."""
    body = json.dumps(fault_body(fault, status, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *([CLOSE] if close else [])]})
    await send({"type": "http.response.body", "body": body})



"""The hot routes without the framework: POST /v1/embed, /v1/embeddings, /v1/detect and
/v1/detect/batch as plain ASGI.

Under load, a third of the adapter's Python time went to Starlette and FastAPI around the
handler (exception middleware, router, request objects, dependency solving, query parsing;
bench/README.md, "Where the adapter's CPU goes"). This middleware answers those routes
itself: it reads the body under the same limits, calls the same handler (body bytes in, response
bytes out) and sends the two ASGI messages. Every other request goes through FastAPI
unchanged, and so does every error: an exception is answered by the app's own exception
handlers, so status, body and headers are the same byte for byte as on the framework path
(tests/unit/test_inference_fast_path.py checks that on random inputs).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from inference.adapter.responses import TOKENS_HEADER, Reply
from inference.adapter.validation import InvalidRequest, check_body_size

log = logging.getLogger("inference.adapter")
ASGIApp = Callable[..., Awaitable[None]]
Handler = Callable[[bytes], Awaitable[Reply]]  # request body → JSON response body, tokens used
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]
JSON_HEADERS = [(b"content-type", b"application/json")]
TOKENS = TOKENS_HEADER.encode()


async def read_limited(scope: dict[str, Any], receive: Any, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (declared or streamed)."""
    declared = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-length"), None)
    check_body_size(declared, limit)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(f"request body exceeds the limit of {limit} bytes", status=413)
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def read_body(request: Request, limit: int) -> bytes:
    """The same, for a framework route."""
    return await read_limited(request.scope, request.receive, limit)


class FastRoutes:
    """ASGI middleware: `routes` maps a POST path to (handler, body limit)."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, tuple[Handler, int]],
        exception_handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.exception_handlers = exception_handlers  # the app's own (filled in before serving)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        handler, limit = route
        try:
            body, tokens = await handler(await read_limited(scope, receive, limit))
        except Exception as exc:
            response = await self.answer_error(scope, exc)
            await response(scope, receive, send)
            return
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), (TOKENS, b"%d" % tokens)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def answer_error(self, scope: dict[str, Any], exc: Exception) -> Response:
        """The response the app's exception handlers give `exc` (most specific class first)."""
        for cls in type(exc).__mro__:
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                if cls is Exception:  # what Starlette's ServerErrorMiddleware would log
                    log.error("unexpected error on %s", scope["path"], exc_info=exc)
                return await handler(Request(scope), exc)
        raise exc


class AdapterApp(FastAPI):
    """FastAPI with an ASGI layer in front of its whole middleware stack (`front`, set once the
    routes exist): the hot routes then skip Starlette's error and telemetry middleware too."""

    front: ASGIApp | None = None

    async def framework(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)

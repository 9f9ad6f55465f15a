"""Every HTTP error of the key API is the shared JSON body {"error", "detail", "code"}."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common import errors

log = logging.getLogger(__name__)

STORE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


class ApiError(Exception):
    """Raised by handlers for a deliberate error reply."""

    def __init__(self, status: int, error: str, detail: str, code: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.code = status, error, detail, code


def error_response(
    status: int, error: str, detail: str, code: str, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(errors.error_dict(error, detail, code), status_code=status, headers=headers)


def describe(problems: list[dict]) -> str:
    """pydantic errors → `name: Field required; rate_limit_per_minute: Input should be ≥ 1`."""
    parts = []
    for problem in problems:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.error, exc.detail, exc.code)

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "Validation error", describe(list(exc.errors())), errors.VALIDATION_ERROR)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            return error_response(404, "Not found", f"No route for {where}", errors.NOT_FOUND)
        if exc.status_code == 405:
            return error_response(
                405, "Method not allowed", f"{where} is not allowed", errors.METHOD_NOT_ALLOWED, exc.headers
            )
        code = errors.INTERNAL_ERROR if exc.status_code >= 500 else errors.VALUE_ERROR
        return error_response(exc.status_code, "HTTP error", str(exc.detail), code, exc.headers)

    async def store_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("key store unavailable: %r", exc)
        detail = "The key store is unreachable; try again shortly."
        return error_response(
            503, "Service unavailable", detail, errors.SERVICE_UNAVAILABLE, {"Retry-After": "1"}
        )

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "Internal error", "Unexpected error.", errors.INTERNAL_ERROR)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for error in STORE_ERRORS:
        app.add_exception_handler(error, store_down)
    app.add_exception_handler(Exception, unexpected)

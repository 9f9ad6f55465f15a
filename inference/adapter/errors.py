"""Exception handlers: every error the adapter answers is the JSON body {"error", "detail", "code"}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from common.errors import (
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    SERVICE_UNAVAILABLE,
    VALIDATION_ERROR,
    VALUE_ERROR,
)
from inference.adapter.metrics import AdapterMetrics
from inference.adapter.responses import OrjsonResponse, error_response
from inference.adapter.schemas import ErrorBody
from inference.adapter.triton_client import TritonFailure, TritonUnavailable
from inference.adapter.validation import InvalidRequest, describe_validation_errors

log = logging.getLogger("inference.adapter")

RETRY_AFTER_OVERLOADED_S = 1  # a full Triton queue drains in about a second
RETRY_AFTER_DOWN_S = 5  # a Triton restart takes 5-10 s


def unavailable(detail: str, retry_after_s: int = RETRY_AFTER_DOWN_S) -> OrjsonResponse:
    return error_response(
        503, "Service unavailable", detail, SERVICE_UNAVAILABLE, headers={"Retry-After": str(retry_after_s)}
    )


def install_error_handlers(app: FastAPI, metrics: AdapterMetrics) -> None:
    async def invalid_request(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidRequest)
        return error_response(exc.status, "Validation error", exc.detail, VALIDATION_ERROR)

    async def request_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(
            422, "Validation error", describe_validation_errors(list(exc.errors())), VALIDATION_ERROR
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            return error_response(404, "Not found", f"no such endpoint: {where}", NOT_FOUND, exc.headers)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            detail = f"method not allowed: {where} (allowed: {allowed})"
            return error_response(405, "Method not allowed", detail, METHOD_NOT_ALLOWED, exc.headers)
        code = INTERNAL_ERROR if exc.status_code >= 500 else VALUE_ERROR
        return error_response(exc.status_code, "HTTP error", str(exc.detail), code, exc.headers)

    async def triton_unavailable(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, TritonUnavailable)
        metrics.triton_errors.labels("overloaded" if exc.overloaded else "unavailable").inc()
        # The reason (addresses, gRPC text) is for our logs at debug level, not for clients.
        log.debug("inference unavailable: %s", exc)
        if exc.overloaded:
            return unavailable("the inference backend is overloaded; retry shortly", RETRY_AFTER_OVERLOADED_S)
        return unavailable("the inference backend is unavailable; retry later")

    async def triton_failure(_: Request, exc: Exception) -> Response:
        metrics.triton_errors.labels("failed").inc()
        log.warning("inference failed: %s", exc)
        detail = "the inference backend failed to process the request"
        return error_response(502, "Bad gateway", detail, INTERNAL_ERROR)

    async def unexpected(_: Request, exc: Exception) -> Response:
        # Starlette logs the traceback after this; the client only gets the JSON body.
        return error_response(500, "Internal server error", "unexpected error", INTERNAL_ERROR)

    app.add_exception_handler(InvalidRequest, invalid_request)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(TritonUnavailable, triton_unavailable)
    app.add_exception_handler(TritonFailure, triton_failure)
    app.add_exception_handler(Exception, unexpected)


# Error responses for the OpenAPI docs of the embedding endpoints.
ERRORS_DOC: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (413, 422, 500, 502, 503)
}

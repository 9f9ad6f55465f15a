"""FastAPI app factory: `/v1/embed`, `/health`, `/ready`, and JSON errors for everything else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
from inference.adapter.health import fetch_queue_size, package_version
from inference.adapter.responses import OrjsonResponse, error_response
from inference.adapter.schemas import EmbedRequest, EmbedResponse, ErrorBody, HealthResponse, ReadyResponse
from inference.adapter.settings import AdapterSettings
from inference.adapter.triton_client import TritonEmbedder, TritonFailure, TritonUnavailable
from inference.adapter.validation import (
    InvalidRequest,
    check_body_size,
    describe_validation_errors,
    parse_embed_body,
)

log = logging.getLogger("inference.adapter")

RETRY_AFTER_S = "5"
METRICS_TIMEOUT_S = 0.5
ERRORS = {
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
    500: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


def _unavailable(detail: str) -> OrjsonResponse:
    return error_response(
        503, "Service unavailable", detail, SERVICE_UNAVAILABLE, headers={"Retry-After": RETRY_AFTER_S}
    )


def _install_error_handlers(app: FastAPI) -> None:
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
        # The reason (addresses, gRPC text) is for our logs at debug level, not for clients.
        log.debug("inference unavailable: %s", exc)
        return _unavailable("the inference backend is unavailable; retry later")

    async def triton_failure(_: Request, exc: Exception) -> Response:
        log.warning("inference failed: %s", exc)
        return error_response(500, "Internal server error", "inference failed", INTERNAL_ERROR)

    async def unexpected(_: Request, exc: Exception) -> Response:
        # Starlette logs the traceback after this; the client only gets the JSON body.
        return error_response(500, "Internal server error", "unexpected error", INTERNAL_ERROR)

    app.add_exception_handler(InvalidRequest, invalid_request)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(TritonUnavailable, triton_unavailable)
    app.add_exception_handler(TritonFailure, triton_failure)
    app.add_exception_handler(Exception, unexpected)


def create_app(settings: AdapterSettings | None = None, embedder: TritonEmbedder | None = None) -> FastAPI:
    """The adapter app; `embedder` is injectable for tests (default: a client for settings' Triton)."""
    settings = settings or AdapterSettings()
    triton = embedder or TritonEmbedder(settings.triton_grpc_url, settings.model, settings.request_timeout)
    version = package_version()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await triton.start()  # one shared gRPC channel for all requests
        try:
            yield
        finally:
            await triton.close()

    app = FastAPI(
        title="Inference adapter",
        description="Text embeddings served by Triton Inference Server.",
        version=version,
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    _install_error_handlers(app)
    embed_body = {
        "content": {"application/json": {"schema": EmbedRequest.model_json_schema()}},
        "required": True,
    }

    @app.post(
        "/v1/embed",
        summary="Embed one text",
        response_model=None,
        responses={200: {"model": EmbedResponse}, **ERRORS},
        openapi_extra={"requestBody": embed_body},
    )
    async def embed(request: Request) -> Response:
        check_body_size(request.headers.get("content-length"), settings.max_input_chars)
        text = parse_embed_body(await request.body(), settings.max_input_chars)
        result = await triton.embed(text)
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
        return OrjsonResponse(
            {"embedding": result.vector, "model": settings.model_display_name, "usage": usage}
        )

    @app.get(
        "/health",
        summary="Liveness and inference status",
        response_model=None,
        responses={200: {"model": HealthResponse}},
    )
    async def health() -> Response:
        # Always 200: this reports state; /ready is the gate for traffic.
        ready, queue_size = await asyncio.gather(
            triton.ready(),
            asyncio.to_thread(fetch_queue_size, settings.triton_metrics_url, METRICS_TIMEOUT_S),
        )
        device = await triton.device() if ready else None
        return OrjsonResponse(
            {
                "status": "healthy" if ready else "degraded",
                "gateway_version": version,
                "inference_service": {
                    "status": "healthy" if ready else "unavailable",
                    "model": settings.model_display_name,
                    "device": device or "unknown",
                    "queue_size": queue_size or 0,
                    "inflight_batches": triton.inflight,
                },
            }
        )

    @app.get(
        "/ready",
        summary="Readiness: 200 when the model is ready",
        response_model=None,
        responses={200: {"model": ReadyResponse}, 503: {"model": ErrorBody}},
    )
    async def ready() -> Response:
        if await triton.ready():
            return OrjsonResponse({"status": "ready"})
        return _unavailable(f"model {settings.model_display_name} is not ready")

    return app

"""FastAPI app factory: `/v1/embed`, `/v1/embeddings` (OpenAI), `/health`, `/ready`, `/metrics`, docs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from inference.adapter.detect import TritonDetector, detect_router
from inference.adapter.errors import ERRORS_DOC, install_error_handlers, unavailable
from inference.adapter.fast_path import AdapterApp, ASGIApp, FastRoutes, read_body
from inference.adapter.health import fetch_queue_size, health_body, package_version
from inference.adapter.metrics import AdapterMetrics, MetricsMiddleware
from inference.adapter.openai_compat import check_dimensions, parse_embeddings_body
from inference.adapter.openai_compat import embeddings_body as openai_body
from inference.adapter.responses import OrjsonResponse, Reply, dump_json, reply_response
from inference.adapter.schemas import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorBody,
    HealthResponse,
    ReadyResponse,
)
from inference.adapter.settings import AdapterSettings
from inference.adapter.triton_client import TritonEmbedder
from inference.adapter.validation import max_body_bytes, parse_embed_body

METRICS_TIMEOUT_S = 0.5
ROUTES = ("/v1/embed", "/v1/embeddings", "/v1/detect", "/v1/detect/batch", "/health", "/ready", "/metrics")


def _json_body(model: type) -> dict[str, object]:
    return {
        "requestBody": {
            "content": {"application/json": {"schema": model.model_json_schema()}},
            "required": True,
        }
    }


def create_app(
    settings: AdapterSettings | None = None,
    embedder: TritonEmbedder | None = None,
    detector: TritonDetector | None = None,
) -> FastAPI:
    """The adapter app; `embedder` and `detector` are injectable for tests (default: Triton clients)."""
    settings = settings or AdapterSettings()
    triton = embedder or TritonEmbedder(settings.triton_grpc_url, settings.model, settings.request_timeout)
    version = package_version()
    model_name = settings.model_display_name
    metrics = AdapterMetrics(inflight=lambda: triton.inflight)
    embed_limit = max_body_bytes(settings.max_input_chars)
    embeddings_limit = max_body_bytes(settings.max_input_chars, settings.max_inputs)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await triton.start()  # one shared gRPC channel for all requests
        try:
            yield
        finally:
            await triton.close()

    app = AdapterApp(
        title="Inference adapter",
        description="Text embeddings served by Triton Inference Server.",
        version=version,
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    install_error_handlers(app, metrics)
    # /v1/detect*: the detector ensemble on the same Triton. Readiness stays the embedder's, so a
    # Triton started without the detector still serves embeddings (detect then answers 503).
    detection = detect_router(settings, detector)
    app.include_router(detection)

    async def embed_body(raw: bytes) -> Reply:
        text = parse_embed_body(raw, settings.max_input_chars)
        result = await triton.embed([text])
        tokens = int(result.tokens[0])
        metrics.record_embeddings(1, tokens)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return dump_json({"embedding": result.vectors[0], "model": model_name, "usage": usage}), tokens

    async def embeddings_body(raw: bytes) -> Reply:
        parsed = parse_embeddings_body(
            raw,
            max_chars=settings.max_input_chars,
            max_inputs=settings.max_inputs,
            model_names=settings.model_names,
        )
        if parsed.dimensions is not None:
            check_dimensions(parsed.dimensions, (await triton.info()).dim)
        result = await triton.embed(parsed.texts)
        tokens = int(result.tokens.sum())
        metrics.record_embeddings(len(parsed.texts), tokens)
        return dump_json(openai_body(result.vectors, tokens, model_name, parsed.encoding_format)), tokens

    # The framework routes: the OpenAPI docs, and the path every request takes with the fast
    # path off (ADAPTER_FAST_PATH=0); the fast path (below) answers the same with the same code.
    @app.post(
        "/v1/embed",
        summary="Embed one text",
        response_model=None,
        responses={200: {"model": EmbedResponse}, **ERRORS_DOC},
        openapi_extra=_json_body(EmbedRequest),
    )
    async def embed(request: Request) -> Response:
        return reply_response(await embed_body(await read_body(request, embed_limit)))

    @app.post(
        "/v1/embeddings",
        summary="Embed one or more texts (OpenAI-compatible)",
        response_model=None,
        responses={200: {"model": EmbeddingsResponse}, **ERRORS_DOC},
        openapi_extra=_json_body(EmbeddingsRequest),
    )
    async def embeddings(request: Request) -> Response:
        return reply_response(await embeddings_body(await read_body(request, embeddings_limit)))

    # In front of everything: the metrics, then the fast path (which hands every other request
    # to the framework).
    inner: ASGIApp = app.framework
    if settings.fast_path:
        routes = {
            "/v1/embed": (embed_body, embed_limit),
            "/v1/embeddings": (embeddings_body, embeddings_limit),
            **detection.fast_routes,  # type: ignore[attr-defined]
        }
        inner = FastRoutes(inner, routes, app.exception_handlers)
    app.front = MetricsMiddleware(inner, metrics=metrics, routes=ROUTES)

    @app.get(
        "/health",
        summary="Liveness and inference status (503 when Triton is not ready)",
        response_model=None,
        responses={200: {"model": HealthResponse}, 503: {"model": HealthResponse}},
    )
    async def health() -> Response:
        ready, queue_size = await asyncio.gather(
            triton.ready(),
            asyncio.to_thread(fetch_queue_size, settings.triton_metrics_url, METRICS_TIMEOUT_S),
        )
        device = await triton.device() if ready else None
        status, body = health_body(ready, version, model_name, device, queue_size, triton.inflight)
        return OrjsonResponse(body, status_code=status)

    @app.get(
        "/ready",
        summary="Readiness: 200 when the model is loaded and ready",
        response_model=None,
        responses={200: {"model": ReadyResponse}, 503: {"model": ErrorBody}},
    )
    async def ready() -> Response:
        if await triton.ready():
            return OrjsonResponse({"status": "ready"})
        return unavailable(f"model {model_name} is not ready")

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=True, response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app

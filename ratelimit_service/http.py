"""The HTTP port: GET /v1/usage (behind ext_authz via Envoy), /metrics (Prometheus), /health.

Envoy routes /v1/usage here after ext_authz has set x-gateway-key-id / x-gateway-plan and
copied the key's own limits into x-gateway-rate-limit-<unit> and its token limits into
x-gateway-token-limits (from its dynamic metadata).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from common import errors
from ratelimit_service import tokens
from ratelimit_service.limiter import Limiter
from ratelimit_service.usage import DEFAULT_DOMAIN, limiter_usage
from ratelimit_service.windows import UNIT_SECONDS

log = logging.getLogger(__name__)
OVERRIDE_HEADERS = {f"x-gateway-rate-limit-{unit}": unit for unit in UNIT_SECONDS}
TOKEN_LIMITS_HEADER = "x-gateway-token-limits"  # ext_authz's token_limits metadata, set by Envoy


def _error(status: int, error: str, detail: str, code: str) -> JSONResponse:
    return JSONResponse(errors.error_dict(error, detail, code), status_code=status)


def header_overrides(request: Request) -> dict[str, int]:
    found = {}
    for header, unit in OVERRIDE_HEADERS.items():
        raw = request.headers.get(header, "")
        try:
            value = int(float(raw)) if raw else 0
        except ValueError:
            continue
        if value >= 1:
            found[unit] = value
    return found


def create_app(limiter: Limiter, domain: str = DEFAULT_DOMAIN) -> FastAPI:
    app = FastAPI(title="ratelimit_service", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, "Not found", f"No route for {request.url.path}", errors.NOT_FOUND)
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
            return _error(405, "Method not allowed", detail, errors.METHOD_NOT_ALLOWED)
        return _error(exc.status_code, "Request failed", str(exc.detail), errors.VALUE_ERROR)

    @app.get("/v1/usage")
    async def usage(request: Request) -> JSONResponse:
        key_id = request.headers.get("x-gateway-key-id", "")
        if not key_id:
            detail = "No authenticated key: /v1/usage is served through the gateway with an API key."
            return _error(401, "Authentication failed", detail, errors.AUTHENTICATION_ERROR)
        plan = request.headers.get("x-gateway-plan", "") or "free"
        try:
            token_limits = tokens.parse_limits(request.headers.get(TOKEN_LIMITS_HEADER, ""))
            body = await limiter_usage(limiter, key_id, plan, header_overrides(request), domain, token_limits)
        except Exception as exc:
            log.warning("usage: store failed: %s", exc)
            detail = "The rate-limit store is unreachable; try again shortly."
            return _error(503, "Service unavailable", detail, errors.SERVICE_UNAVAILABLE)
        if body is None:
            return _error(
                404, "Not found", f"No rate limits configured for domain {domain!r}", errors.NOT_FOUND
            )
        return JSONResponse(body)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            store_ok = await limiter.store.ping()
        except Exception:
            store_ok = False
        return JSONResponse({"status": "healthy", "store": "ok" if store_ok else "unreachable"})

    return app

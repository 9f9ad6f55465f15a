"""FastAPI app factory: POST /auth/register, GET /auth/profile, docs, /health and /metrics.

Who may register (see docs/authz.md): a caller presenting the admin token (`X-Admin-Token`)
may create any key; without it, only when open registration is enabled, and then only on
the default plan at or below its limits. /auth/profile trusts `x-gateway-key-id`, which
Envoy's ext_authz sets (overwriting client copies): this port must only be reachable
through Envoy (it binds 127.0.0.1 by default).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pydantic
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from authz_service import keys
from authz_service.durations import parse_duration
from authz_service.http.errors import ApiError, describe, error_response, install
from authz_service.http.schemas import ErrorBody, ProfileResponse, RegisterRequest, RegisterResponse
from authz_service.http.settings import HttpSettings
from authz_service.model import KeyRecord
from authz_service.plans import Limits, Plans, token_limits
from authz_service.sealing import box_from_setting
from authz_service.store import PostgresKeyStore, new_key_id, new_signing_secret
from authz_service.usage import UsageReader
from common import errors
from usage_service.reading import month_to_date

log = logging.getLogger("authz_service.http")

OPENAPI_URL = "/auth/openapi.json"
GATEWAY_OPENAPI = Path(__file__).with_name("gateway_openapi.json")
KEY_ID_HEADER = "x-gateway-key-id"
ADMIN_TOKEN_HEADER = "x-admin-token"
REGISTRATIONS = Counter("authz_registrations", "keys created through POST /auth/register", ["by"])
ERRORS = {s: {"model": ErrorBody} for s in (401, 403, 422, 503)}


def key_info(record: KeyRecord, plans: Plans) -> dict[str, Any]:
    limits = plans.key_limits(record)
    return {
        "id": record.id, "prefix": record.display_prefix, "name": record.name, "owner": record.owner,
        "environment": record.environment, "plan": record.plan, "rate_limit_per_minute": limits.per_minute,
        "rate_limit_per_hour": limits.per_hour, "token_limit_per_minute": limits.tokens_per_minute,
        "token_limit_per_day": limits.tokens_per_day, "scopes": list(record.scopes),
        "allowed_ips": list(record.allowed_ips), "signing": record.signing,
        "created_at": record.created_at, "expires_at": record.expires_at,
    }  # fmt: skip


def usage_of(body: dict[str, Any] | None, limits: Limits) -> dict[str, Any] | None:
    """The ratelimit service's usage body → the profile's `usage` (with what is left)."""
    if body is None:
        return None
    counts = body["usage"]
    minute, hour = counts.get("requests_last_minute", 0), counts.get("requests_last_hour", 0)
    usage = {
        "requests_last_minute": minute,
        "requests_last_hour": hour,
        "remaining_minute": max(0, limits.per_minute - minute),
        "remaining_hour": max(0, limits.per_hour - hour),
        "timestamp": counts["timestamp"],
    }
    for unit, limit in token_limits(limits).items():
        if limit is not None:
            used = counts.get(f"tokens_last_{unit}", 0)
            usage[f"tokens_last_{unit}"], usage[f"remaining_tokens_{unit}"] = used, max(0, limit - used)
    return usage


def registrar(settings: HttpSettings, token: str | None) -> str:
    """'admin' or 'open' for a caller (sending `token` as X-Admin-Token) allowed to register.

    Raises ApiError otherwise. A wrong token is refused even with open registration on.
    """
    if token is not None:
        if settings.admin_token and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
            return "admin"
        raise ApiError(401, "Authentication failed", "Invalid admin token.", errors.AUTHENTICATION_ERROR)
    if settings.open_registration:
        return "open"
    if settings.admin_token:
        detail = f"Registration needs the admin token in the {ADMIN_TOKEN_HEADER} header."
        raise ApiError(401, "Authentication failed", detail, errors.AUTHENTICATION_ERROR)
    detail = "Registration is disabled: the operator has set neither an admin token nor open registration."
    raise ApiError(403, "Permission denied", detail, errors.PERMISSION_DENIED)


def check_open_request(body: RegisterRequest, plans: Plans) -> None:
    """Open registration mints default-plan keys only, with limits no higher than the plan's."""
    if body.plan not in (None, plans.default_plan):
        detail = f"Open registration only creates '{plans.default_plan}' keys; ask an admin for others."
        raise ApiError(403, "Permission denied", detail, errors.PERMISSION_DENIED)
    limits = plans.limits_for(plans.default_plan)
    minute, hour = body.rate_limit_per_minute or 0, body.rate_limit_per_hour or 0
    if minute > limits.per_minute or hour > limits.per_hour:
        detail = (
            f"Open registration cannot raise limits above the plan's "
            f"({limits.per_minute}/minute, {limits.per_hour}/hour)."
        )
        raise ApiError(403, "Permission denied", detail, errors.PERMISSION_DENIED)
    # A plan's token limit may only be lowered (a plan without one: any limit is lower).
    asked = {"minute": body.token_limit_per_minute, "day": body.token_limit_per_day}
    for unit, plan_limit in token_limits(limits).items():
        wanted = asked[unit]
        if plan_limit is not None and wanted is not None and wanted > plan_limit:
            detail = f"Open registration cannot raise the token limit above the plan's ({plan_limit}/{unit})."
            raise ApiError(403, "Permission denied", detail, errors.PERMISSION_DENIED)


def create_app(settings: HttpSettings, plans: Plans) -> FastAPI:
    state: dict[str, Any] = {}
    box = box_from_setting(settings.signing_master_key)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["store"] = await PostgresKeyStore.connect(settings.database_url)
        state["usage"] = UsageReader.from_url(settings.redis_url, settings.ratelimit_config)
        # The usage records (usage_service's tables, same database): connects on first use.
        state["records"] = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=2, timeout=5)
        try:
            yield
        finally:
            await state["records"].close()
            await state["usage"].close()
            await state["store"].close()

    app = FastAPI(
        title="API keys",
        description="Register API keys and read a key's profile and current usage. Served through the "
        "gateway under /auth/.",
        version="1.0.0",
        lifespan=lifespan,
        docs_url="/auth/docs",
        redoc_url="/auth/redoc",
        openapi_url=OPENAPI_URL,
    )
    install(app)

    @app.post(
        "/auth/register",
        status_code=201,
        summary="Create an API key (shown once)",
        response_model=RegisterResponse,
        responses=ERRORS,
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": RegisterRequest.model_json_schema()}},
                "required": True,
            },
            "parameters": [
                {"name": "X-Admin-Token", "in": "header", "required": False, "schema": {"type": "string"}}
            ],
        },
    )
    async def register(request: Request) -> JSONResponse:
        by = registrar(settings, request.headers.get(ADMIN_TOKEN_HEADER))
        # Parsed by hand: clients (and the seed's curl) often send JSON without a JSON content type.
        try:
            body = RegisterRequest.model_validate_json(await request.body() or b"null")
        except pydantic.ValidationError as exc:
            return error_response(
                422, "Validation error", describe(list(exc.errors())), errors.VALIDATION_ERROR
            )
        if by == "open":
            check_open_request(body, plans)
        plan = body.plan or plans.default_plan
        if plan not in plans:
            detail = f"plan: unknown plan {plan!r}; choose from {', '.join(plans.names())}"
            return error_response(422, "Validation error", detail, errors.VALIDATION_ERROR)
        key_id, secret, sealed = new_key_id(), None, None
        if body.signing:
            if box is None:
                detail = "signing: this gateway has no signing master key (SIGNING_MASTER_KEY)"
                return error_response(422, "Validation error", detail, errors.VALIDATION_ERROR)
            secret, sealed = new_signing_secret(box, key_id)
        key = keys.generate_key(keys.prefix_for(body.environment))
        expires_at = datetime.now(UTC) + parse_duration(body.expires_in) if body.expires_in else None
        record = await state["store"].create_key(
            key, body.name, body.owner or body.name, plan, body.rate_limit_per_minute,
            body.rate_limit_per_hour, body.scopes, expires_at, allowed_ips=body.allowed_ips,
            key_id=key_id, signing_secret_enc=sealed, token_limit_per_minute=body.token_limit_per_minute,
            token_limit_per_day=body.token_limit_per_day,
        )  # fmt: skip
        REGISTRATIONS.labels(by).inc()
        payload = RegisterResponse(api_key=key, signing_secret=secret, **key_info(record, plans))
        return JSONResponse(payload.model_dump(mode="json"), status_code=201)

    @app.get("/auth/profile", summary="The calling key's settings and usage", response_model=ProfileResponse,
             responses=ERRORS)  # fmt: skip
    async def profile(request: Request) -> JSONResponse:
        key_id = request.headers.get(KEY_ID_HEADER)
        record = await state["store"].find_by_id(key_id) if key_id else None
        if record is None:
            detail = "Send your API key through the gateway: 'Authorization: Bearer <key>' or 'X-API-Key'."
            raise ApiError(401, "Authentication failed", detail, errors.AUTHENTICATION_ERROR)
        effective = plans.key_limits(record)
        limits = {
            "per_minute": effective.per_minute, "per_hour": effective.per_hour,
            "tokens_per_minute": effective.tokens_per_minute, "tokens_per_day": effective.tokens_per_day,
        }  # fmt: skip
        usage = None
        try:
            usage = usage_of(await state["usage"].read(record.id, record.plan, effective), effective)
        except Exception as exc:  # the profile is still useful without live counters
            log.warning("could not read usage counters: %r", exc)
        month = None
        try:
            month = vars(await month_to_date(state["records"], record.id, datetime.now(UTC)))
        except Exception as exc:  # as above: the profile stays useful without the records
            log.warning("could not read usage records: %r", exc)
        payload = ProfileResponse(
            **key_info(record, plans),
            status=str(record.status()),
            last_used_at=record.last_used_at,
            limits=limits,
            usage=usage,
            month_to_date=month,
        )
        return JSONResponse(payload.model_dump(mode="json"))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    # The gateway's one public document (all services' routes, made by `python -m stack.openapi`),
    # which Envoy routes /docs, /redoc and /openapi.json of the public port to.
    gateway_document = json.loads(GATEWAY_OPENAPI.read_text())

    @app.get("/openapi.json", include_in_schema=False)
    async def gateway_openapi() -> JSONResponse:
        return JSONResponse(gateway_document)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Inference gateway - Swagger UI")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="Inference gateway - ReDoc")

    return app

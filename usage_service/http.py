"""The HTTP port: GET /v1/usage/history (the calling key's own records, behind ext_authz),
GET /admin/usage (the billing export, admin token), /health, /ready, /metrics.

/v1/usage/history trusts x-gateway-key-id, which Envoy's ext_authz sets (overwriting client
copies): like the key API, this port must only be reachable through Envoy.
"""

from __future__ import annotations

import csv
import hmac
import io
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from common import errors
from usage_service import reading
from usage_service.aggregate import COUNTERS
from usage_service.params import ParamError, parse_export, parse_history
from usage_service.writer import WriterState

log = logging.getLogger("usage_service.http")
KEY_ID_HEADER, ADMIN_TOKEN_HEADER = "x-gateway-key-id", "x-admin-token"
STORE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
MAX_EXPORT_ROWS = 1_000_000  # ~150 MB of JSON: beyond that, ask for less


class Bucket(BaseModel):
    start: str
    end: str
    requests: int
    tokens: int
    client_errors: int
    server_errors: int
    rate_limited: int


class UsageHistory(BaseModel):
    granularity: str
    data: list[Bucket]


class ErrorBody(BaseModel):
    error: str
    detail: str
    code: str


def _error(
    status: int, error: str, detail: str, code: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(errors.error_dict(error, detail, code), status_code=status, headers=headers)


def _invalid(exc: ParamError) -> JSONResponse:
    return _error(422, "Validation error", str(exc), errors.VALIDATION_ERROR)


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


RANGE_PARAMS = [
    _query("granularity", "hour (default for history) or day"),
    _query(
        "start", "ISO 8601 date or date-time (UTC when no offset); default: 24 hours / 30 days before end"
    ),
    _query(
        "end", "ISO 8601 date or date-time, exclusive; default: now. At most 31 days (hour) or 366 days (day)"
    ),
]
ERRORS = {s: {"model": ErrorBody} for s in (401, 422, 503)}


def _unavailable(exc: Exception) -> JSONResponse:
    log.warning("usage store unavailable: %r", exc)
    detail = "The usage store is unreachable; try again shortly."
    return _error(503, "Service unavailable", detail, errors.SERVICE_UNAVAILABLE, {"Retry-After": "1"})


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["key_id", "route", "start", "end", *COUNTERS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def create_app(
    db: Callable[[], asyncpg.Pool | None],
    state: WriterState,
    admin_token: str = "",
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    max_export_rows: int = MAX_EXPORT_ROWS,
) -> FastAPI:
    app = FastAPI(title="Usage records", version="1.0.0", docs_url=None, redoc_url=None,
                  openapi_url="/usage/openapi.json")  # fmt: skip

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 405:
            return _error(405, "Method not allowed", f"{where} is not allowed", errors.METHOD_NOT_ALLOWED)
        return _error(404, "Not found", f"No route for {where}", errors.NOT_FOUND)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return _error(500, "Internal error", "Unexpected error.", errors.INTERNAL_ERROR)

    def pool() -> asyncpg.Pool:
        found = db()
        if found is None:
            raise ConnectionError("not connected to Postgres yet")
        return found

    @app.get(
        "/v1/usage/history",
        summary="The calling key's usage per hour or day",
        response_model=UsageHistory,
        responses=ERRORS,
        openapi_extra={"parameters": RANGE_PARAMS},
    )
    async def usage_history(request: Request) -> JSONResponse:
        key_id = request.headers.get(KEY_ID_HEADER, "")
        if not key_id:
            detail = "No authenticated key: /v1/usage/history is served through the gateway with an API key."
            return _error(401, "Authentication failed", detail, errors.AUTHENTICATION_ERROR)
        try:
            span = parse_history(request.query_params.multi_items(), now())
        except ParamError as exc:
            return _invalid(exc)
        try:
            data = await reading.history(pool(), key_id, span)
        except STORE_ERRORS as exc:
            return _unavailable(exc)
        return JSONResponse({"granularity": span.granularity, "data": data})

    export_params = [
        *RANGE_PARAMS,
        _query("format", "json (default) or csv"),
        _query("key_id", "one key only"),
    ]
    admin_header = {"name": "X-Admin-Token", "in": "header", "required": True, "schema": {"type": "string"}}

    @app.get("/admin/usage", summary="Export usage records per key, route and day/hour (admin)",
             responses=ERRORS, openapi_extra={"parameters": [admin_header, *export_params]})  # fmt: skip
    async def admin_usage(request: Request) -> Response:
        token = request.headers.get(ADMIN_TOKEN_HEADER)
        if not admin_token:
            detail = "The usage export is disabled: the operator has set no admin token."
            return _error(403, "Permission denied", detail, errors.PERMISSION_DENIED)
        if token is None or not hmac.compare_digest(token.encode(), admin_token.encode()):
            detail = f"Send the admin token in the {ADMIN_TOKEN_HEADER} header."
            return _error(401, "Authentication failed", detail, errors.AUTHENTICATION_ERROR)
        try:
            query = parse_export(request.query_params.multi_items(), now())
        except ParamError as exc:
            return _invalid(exc)
        try:
            rows = await reading.export(pool(), query, max_export_rows)
        except STORE_ERRORS as exc:
            return _unavailable(exc)
        if len(rows) > max_export_rows:
            detail = f"more than {max_export_rows} rows: export a shorter range, or one key_id at a time"
            return _invalid(ParamError("end", detail))
        if query.format == "csv":
            name = f"usage-{query.range.start:%Y%m%dT%H}-{query.range.end:%Y%m%dT%H}.csv"
            headers = {"content-disposition": f'attachment; filename="{name}"'}
            return Response(csv_text(rows), media_type="text/csv; charset=utf-8", headers=headers)
        totals = {c: sum(r[c] for r in rows) for c in COUNTERS}
        span = query.range
        body = {
            "granularity": span.granularity, "start": reading.iso(span.start), "end": reading.iso(span.end),
            "key_id": query.key_id, "rows": rows, "totals": totals,
        }  # fmt: skip
        return JSONResponse(body)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def writer_status() -> dict[str, Any]:
        position = state.position
        return {
            "connected": state.connected,
            "position": None if position is None else {"file": position.identity, "offset": position.offset},
            "last_commit": state.last_commit or None,
            "last_error": state.last_error or None,
        }

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "writer": writer_status()}

    @app.get("/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        ok = state.connected and db() is not None
        return JSONResponse({"ready": ok, "writer": writer_status()}, status_code=200 if ok else 503)

    return app

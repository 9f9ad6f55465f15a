"""`python -m stack.openapi`: the gateway's one public OpenAPI document, from the services' own.

The public API is served by three processes behind Envoy (the inference adapter, the key API,
the usage endpoint); each describes its own routes. This joins them into the document the
gateway serves at /openapi.json (with /docs and /redoc), adds the auth schemes Envoy enforces
and leaves out what is not public (/metrics). Written to authz_service/http/gateway_openapi.json,
which the key API serves; tests/unit/test_openapi.py checks it is current.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from stack import ROOT

OUT = ROOT / "authz_service" / "http" / "gateway_openapi.json"
PUBLIC_PATHS = (
    "/v1/embed", "/v1/embeddings", "/v1/detect", "/v1/detect/batch", "/v1/usage", "/v1/usage/history",
    "/auth/register", "/auth/profile", "/admin/usage", "/health", "/ready",
)  # fmt: skip
KEYED = {"/v1/embed", "/v1/embeddings", "/v1/detect", "/v1/detect/batch", "/v1/usage", "/v1/usage/history",
         "/auth/profile"}  # fmt: skip
SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer sk_live_…"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "X-API-Key: sk_live_…"},
    "adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token",
                   "description": "the gateway's admin token (AUTHZ_ADMIN_TOKEN)"},
}  # fmt: skip
DESCRIPTION = """Text embeddings (and prompt-attack detection) behind API keys and sliding-window rate limits.

**Keys**: `Authorization: Bearer <key>` or `X-API-Key: <key>` (`sk_live_`, `sk_test_`, `sk_dev_`).
**Errors** everywhere: JSON `{"error", "detail", "code"}`; 429 adds `retry_after`, `limit`,
`limit_type` and the headers `Retry-After`, `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
`X-RateLimit-Reset`, `X-RateLimit-Limit-Minute`/`-Hour`, `X-RateLimit-Remaining-Minute`/`-Hour`.
Codes: VALIDATION_ERROR, VALUE_ERROR, AUTHENTICATION_ERROR, PERMISSION_DENIED, RATE_LIMIT_EXCEEDED,
NOT_FOUND, SERVICE_UNAVAILABLE, INTERNAL_ERROR."""


def service_documents() -> list[dict[str, Any]]:
    """Each public service's own OpenAPI document (apps built in-process, nothing started)."""
    from authz_service.http.app import create_app as key_api
    from authz_service.http.settings import HttpSettings
    from authz_service.plans import builtin_plans
    from inference.adapter.app import create_app as adapter
    from inference.adapter.settings import AdapterSettings
    from ratelimit_service.config import DEFAULT_CONFIG, load_config
    from ratelimit_service.http import create_app as usage_api
    from ratelimit_service.limiter import Limiter
    from ratelimit_service.store.memory import MemoryStore
    from usage_service.http import create_app as records_api
    from usage_service.writer import WriterState

    usage = usage_api(Limiter(load_config(DEFAULT_CONFIG), MemoryStore()))
    return [
        adapter(AdapterSettings()).openapi(),
        key_api(HttpSettings(), builtin_plans(60, 1000)).openapi(),
        usage.openapi(),
        records_api(lambda: None, WriterState()).openapi(),
    ]


def combine(documents: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """One document: the public paths of all, their schemas, the auth schemes per path."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for document in documents:
        for path, item in document.get("paths", {}).items():
            if path in PUBLIC_PATHS and path not in paths:
                paths[path] = item
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            schemas.setdefault(name, schema)
    missing = [p for p in PUBLIC_PATHS if p not in paths]
    if missing:
        raise SystemExit(f"openapi: no service documents {', '.join(missing)}")
    for path, item in paths.items():
        for operation in item.values():
            if path in KEYED:
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
            elif path == "/auth/register":
                operation["security"] = [{"adminToken": []}, {}]  # {} : open registration, if on
            elif path == "/admin/usage":
                operation["security"] = [{"adminToken": []}]
    return {
        "openapi": documents[0].get("openapi", "3.1.0"),
        "info": {"title": "Inference gateway", "version": version, "description": DESCRIPTION},
        "paths": {p: paths[p] for p in PUBLIC_PATHS},
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": SCHEMES},
    }


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def render() -> str:
    return json.dumps(combine(service_documents(), project_version()), indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.openapi", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=OUT, help=f"where to write it (default: {OUT.relative_to(ROOT)})"
    )
    args = parser.parse_args(argv)
    args.out.write_text(render())
    print(f"openapi: wrote {args.out}")


if __name__ == "__main__":
    main()

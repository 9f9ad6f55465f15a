"""Default local ports of `make run`, in one table. Each is also the env var its service reads."""

from __future__ import annotations

import os

DEFAULT_PORTS: dict[str, int] = {
    "GATEWAY_PORT": 8000,  # Envoy, the public listener
    "ENVOY_ADMIN_PORT": 9901,  # Envoy admin (loopback only)
    "ADAPTER_PORT": 8001,  # inference adapter (FastAPI)
    "TRITON_HTTP_PORT": 8010,
    "TRITON_GRPC_PORT": 8011,
    "TRITON_METRICS_PORT": 8012,
    "AUTHZ_GRPC_PORT": 9001,
    "AUTHZ_HTTP_PORT": 9002,  # key API (register/profile), behind Envoy's /auth/ routes
    "RATELIMIT_GRPC_PORT": 9011,
    "RATELIMIT_HTTP_PORT": 9012,  # GET /v1/usage (behind Envoy), /metrics
    "USAGE_HTTP_PORT": 9021,  # usage records: /v1/usage/history, /admin/usage (behind Envoy), /metrics
    "EMBEDDED_REDIS_PORT": 6390,  # not 6379/5432: never collide with a system Redis/Postgres
    "EMBEDDED_POSTGRES_PORT": 5442,
}


def port(name: str) -> int:
    return int(os.environ.get(name) or DEFAULT_PORTS[name])

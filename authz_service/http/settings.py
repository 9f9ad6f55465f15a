"""Options of the key API process: every one a `--flag` with an environment fallback."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from authz_service.settings import OneLineParser, add_database_option, add_plan_options, add_signing_option
from common.settings import add_option, env_default, truthy

PROG = "python -m authz_service.http"


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 9002
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6390/0"
    ratelimit_config: Path | None = None
    admin_token: str = ""
    open_registration: bool = False
    log_level: str = "info"
    signing_master_key: str = ""


def build_parser() -> argparse.ArgumentParser:
    d = HttpSettings()
    parser = OneLineParser(
        prog=PROG,
        description="HTTP API for keys (behind Envoy's /auth/ routes): POST /auth/register, "
        "GET /auth/profile, docs at /auth/docs and /auth/redoc, Prometheus /metrics.",
    )
    add_option(parser, "--host", "AUTHZ_HTTP_HOST", d.host, "address to bind (keep it private: see docs)")
    add_option(parser, "--port", "AUTHZ_HTTP_PORT", d.port, "HTTP port", int)
    add_database_option(parser)
    add_option(parser, "--redis-url", "REDIS_URL", d.redis_url, "Redis of the ratelimit service (usage)")
    add_option(
        parser,
        "--ratelimit-config",
        "RATELIMIT_CONFIG",
        None,
        "the ratelimit service's config, to read usage as it counts it (default: its built-in one)",
        Path,
    )
    add_option(
        parser,
        "--admin-token",
        "AUTHZ_ADMIN_TOKEN",
        "",
        "token callers send as X-Admin-Token to register keys (empty: admin registration off)",
    )
    parser.add_argument(
        "--open-registration",
        action="store_true",
        default=env_default("AUTHZ_OPEN_REGISTRATION", False, truthy),
        help="let anyone register default-plan keys without the admin token "
        "(env AUTHZ_OPEN_REGISTRATION=1, default: off)",
    )
    add_plan_options(parser)
    add_signing_option(parser)
    add_option(parser, "--log-level", "AUTHZ_HTTP_LOG_LEVEL", d.log_level, "uvicorn log level")
    return parser

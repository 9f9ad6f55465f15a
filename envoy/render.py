"""Render envoy.yaml.tmpl into a bootstrap Envoy can load (Envoy does not expand env vars).

Usage: python envoy/render.py [--out FILE]  (values from the environment, see DEFAULTS).
No __init__.py here on purpose: `envoy` is also the package xds-protos installs.
"""

from __future__ import annotations

import argparse
import json
import os
import string
from pathlib import Path

TEMPLATE = Path(__file__).with_name("envoy.yaml.tmpl")

# Template placeholder → (environment variable, default).
DEFAULTS: dict[str, tuple[str, str]] = {
    "listen_host": ("GATEWAY_HOST", "127.0.0.1"),
    "listen_port": ("GATEWAY_PORT", "8000"),
    "admin_port": ("ENVOY_ADMIN_PORT", "9901"),
    "admin_host": ("ENVOY_ADMIN_HOST", "127.0.0.1"),
    "authz_host": ("AUTHZ_HOST", "127.0.0.1"),
    "authz_port": ("AUTHZ_GRPC_PORT", "9001"),
    "authz_http_host": ("AUTHZ_HTTP_HOST", "127.0.0.1"),
    "authz_http_port": ("AUTHZ_HTTP_PORT", "9002"),
    "ratelimit_host": ("RATELIMIT_HOST", "127.0.0.1"),
    "ratelimit_port": ("RATELIMIT_GRPC_PORT", "9011"),
    "ratelimit_http_port": ("RATELIMIT_HTTP_PORT", "9012"),
    "adapter_host": ("ADAPTER_HOST", "127.0.0.1"),
    "adapter_port": ("ADAPTER_PORT", "8001"),
    # Inference pools, comma-separated host:port. Priority 0 (e.g. GPU) defaults to the one
    # adapter above; priority 1 (e.g. CPU) takes traffic when priority 0 is unhealthy/ejected.
    "inference_endpoints": ("INFERENCE_ENDPOINTS", ""),
    "inference_fallback_endpoints": ("INFERENCE_FALLBACK_ENDPOINTS", ""),
    # Circuit breaker on the inference cluster: requests in flight and queued beyond
    # these get a fast 503 instead of piling up (2 cores, Triton CPU ≈ 200 texts/s).
    "inference_max_requests": ("INFERENCE_MAX_REQUESTS", "64"),
    "inference_max_pending": ("INFERENCE_MAX_PENDING", "64"),
    "cors_origins": ("CORS_ORIGINS", "*"),
    "max_request_bytes": ("MAX_REQUEST_BYTES", str(4 * 1024 * 1024)),
    "ratelimit_failure_mode_deny": ("RATELIMIT_FAILURE_MODE_DENY", "false"),
}


def cors_origin_matchers(origins: str) -> str:
    """`*` or a comma-separated list of exact origins → Envoy StringMatchers (JSON is YAML)."""
    wanted = [o.strip() for o in origins.split(",") if o.strip()]
    if not wanted or "*" in wanted:
        return json.dumps([{"safe_regex": {"regex": ".*"}}])
    return json.dumps([{"exact": o} for o in wanted])


def localities(primary: str, fallback: str) -> str:
    """Envoy LocalityLbEndpoints for the priority-0 and (optional) priority-1 pools."""
    pools = []
    for priority, endpoints in enumerate((primary, fallback)):
        hosts = [e.strip().rsplit(":", 1) for e in endpoints.split(",") if e.strip()]
        if not hosts:
            continue
        lb_endpoints = [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}
            for host, port in hosts
        ]
        pools.append({"priority": priority, "lb_endpoints": lb_endpoints})
    return json.dumps(pools)


def values_from_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    values = {name: os.environ.get(env) or default for name, (env, default) in DEFAULTS.items()}
    values.update(overrides or {})
    return values


def render(values: dict[str, str]) -> str:
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"unknown template values: {', '.join(sorted(unknown))}")
    primary = values["inference_endpoints"] or f"{values['adapter_host']}:{values['adapter_port']}"
    filled = {
        **values,
        "cors_origin_matchers": cors_origin_matchers(values["cors_origins"]),
        "inference_localities": localities(primary, values["inference_fallback_endpoints"]),
    }
    # substitute() raises KeyError on a placeholder without a value: no half-rendered configs.
    return string.Template(TEMPLATE.read_text()).substitute(filled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args()
    text = render(values_from_env())
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()

"""Envoy bootstraps for the benchmark: the tiny upstream, the floor, local_ratelimit, and the real template.

The hand-written ones are minimal on purpose (they are the reference points); the gateway
scenarios use the project's own template (envoy/envoy.yaml.tmpl), only re-pointed at the
benchmark's processes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from stack import envoy as envoy_launcher

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
UPSTREAM_BODY = '{"ok":true}'


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _listener(port: int, routes: list[dict[str, Any]], http_filters: list[dict[str, Any]]) -> dict[str, Any]:
    manager = {
        "@type": HCM,
        "stat_prefix": "public",
        "codec_type": "AUTO",
        "route_config": {
            "name": "local",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [*http_filters, ROUTER],
    }
    return {
        "name": "public",
        "address": _address(port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _bootstrap(listener: dict[str, Any], admin_port: int | None, upstream_port: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {"static_resources": {"listeners": [listener], "clusters": []}}
    if admin_port is not None:
        config["admin"] = {"address": _address(admin_port)}
    if upstream_port is not None:
        config["static_resources"]["clusters"].append(
            {
                "name": "upstream",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "upstream",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(upstream_port)}}]}],
                },
            }
        )
    return config


UPSTREAM_TOKENS = "12"  # tokens of one short text, as the real model counts them


def tiny_upstream(port: int) -> dict[str, Any]:
    """A native-speed upstream: every path (including /ready) answers 200 with a small JSON body."""
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": UPSTREAM_BODY}},
        # As the adapter reports a request's tokens: what token limits charge and the usage log keeps.
        "response_headers_to_add": [{"header": {"key": "x-gateway-tokens", "value": UPSTREAM_TOKENS}}],
    }
    return _bootstrap(_listener(port, [route], []), None, None)


def plain_router(port: int, admin_port: int, upstream_port: int) -> dict[str, Any]:
    """The floor: Envoy with no filters but the router."""
    route = {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}
    return _bootstrap(_listener(port, [route], []), admin_port, upstream_port)


def local_ratelimit(port: int, admin_port: int, upstream_port: int) -> dict[str, Any]:
    """Envoy's own token bucket (no sidecar) plus a header check: what a user gets with no Python at all.

    The bucket is huge so nothing is refused; the filter still runs for every request.
    """
    always = {"numerator": 100, "denominator": "HUNDRED"}
    limiter = {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "local_rate_limit",
            "token_bucket": {
                "max_tokens": 1_000_000_000,
                "tokens_per_fill": 1_000_000_000,
                "fill_interval": "60s",
            },
            "filter_enabled": {"runtime_key": "lrl_enabled", "default_value": always},
            "filter_enforced": {"runtime_key": "lrl_enforced", "default_value": always},
        },
    }
    has_key = {"name": "authorization", "string_match": {"prefix": "Bearer sk_"}}
    routes = [
        {"match": {"prefix": "/", "headers": [has_key]}, "route": {"cluster": "upstream"}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 401, "body": {"inline_string": "{}"}}},
    ]
    return _bootstrap(_listener(port, routes, [limiter]), admin_port, upstream_port)


def write(config: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML; Envoy reads either
    return path


def _endpoints(ports: list[int]) -> list[dict[str, Any]]:
    return [{"lb_endpoints": [{"endpoint": {"address": _address(port)}} for port in ports]}]


def gateway(
    path: Path,
    port: int,
    admin_port: int,
    upstream_port: int,
    authz_ports: list[int],
    ratelimit_ports: list[int],
    fused: bool = False,
    tls: tuple[Path, Path] | None = None,
    usage_log: Path | None = None,
    token_charge: str = "envoy",
) -> Path:
    """The project's template, every sidecar process as one endpoint of its cluster.

    `fused`: rendered in fused mode (no ratelimit filter; the authz service decides the limits).
    `tls`: (certificate, key) PEM files: the public listener speaks HTTPS.
    `usage_log`: Envoy also writes the usage log there (usage_service meters it).

    Separate ports, not SO_REUSEPORT: Envoy keeps few long-lived HTTP/2 connections, so a
    shared port balances connections rather than calls (shared/notes/performance.md).
    """
    overrides = {
        "listen_port": str(port),
        "admin_port": str(admin_port),
        "authz_port": str(authz_ports[0]),
        "adapter_port": str(upstream_port),
        "inference_endpoints": f"127.0.0.1:{upstream_port}",
        "fused_limits": "true" if fused else "false",
    }
    if tls is not None:  # HTTPS on the public listener: (certificate, key) files
        overrides["tls_cert"], overrides["tls_key"] = str(tls[0]), str(tls[1])
    if ratelimit_ports:
        overrides["ratelimit_port"] = str(ratelimit_ports[0])
    if usage_log is not None:
        overrides["usage_log_path"] = str(usage_log)
    overrides["token_charge"] = token_charge  # usage: the usage service charges tokens, not Envoy
    envoy_launcher.write_config(path, overrides)
    config = yaml.safe_load(path.read_text())
    for cluster in config["static_resources"]["clusters"]:
        ports = {"authz": authz_ports, "ratelimit": ratelimit_ports}.get(cluster["name"])
        if ports is not None:
            cluster["load_assignment"]["endpoints"] = _endpoints(ports)
    return write(config, path)

"""Render envoy.yaml.tmpl into a bootstrap Envoy can load (Envoy does not expand env vars).

Usage: python envoy/render.py [--out FILE]  (values from the environment, see DEFAULTS).
No __init__.py here on purpose: `envoy` is also the package xds-protos installs.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import string
import sys
from pathlib import Path
from typing import Any

# The sibling modules (envoy/ is not a package: loaded by path, or run as a script).
sys.path.insert(0, str(Path(__file__).parent))
from render_tls import check_tls_files, tls_sds, with_tls
from render_usage import EXT_AUTHZ, RATELIMIT, token_charge_mode, usage_log, without_stream_done_charges

__all__ = ["check_tls_files", "render", "tls_sds", "values_from_env"]

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
    "usage_host": ("USAGE_HOST", "127.0.0.1"),
    "usage_http_port": ("USAGE_HTTP_PORT", "9021"),
    # A second access log (JSON lines) of the requests ext_authz granted, which usage_service
    # turns into usage records (docs/usage.md). '' = none.
    "usage_log_path": ("GATEWAY_USAGE_LOG", ""),
    # Who charges a response's tokens to the token limits: `envoy` (the ratelimit filter's policy
    # applied when the stream is done: one more call per request) or `usage` (the usage service,
    # in batches from the usage log: no call per request, windows a second or two behind).
    "token_charge": ("GATEWAY_TOKEN_CHARGE", "envoy"),
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
    # Fused limits (docs/ratelimit.md): no ratelimit filter; the authz service decides the limits.
    "fused_limits": ("GATEWAY_FUSED_LIMITS", "false"),
    # Host / :authority values served (comma-separated names, `*.example.com` wildcards); others
    # get a JSON 421 (Misdirected Request) from Envoy itself. `*`: any.
    "allowed_hosts": ("GATEWAY_ALLOWED_HOSTS", "*"),
    # Proxies in front of Envoy whose X-Forwarded-For entries are trusted (0: the TCP peer is the
    # client, whatever a client writes in X-Forwarded-For).
    "trusted_hops": ("GATEWAY_TRUSTED_HOPS", "0"),
    # Gateway-wide client address rules (comma-separated IPv4/IPv6 CIDRs), enforced by Envoy's RBAC
    # filter before any sidecar call: deny wins; with an allow list, only those addresses.
    "allow_cidrs": ("GATEWAY_ALLOW_CIDRS", ""),
    "deny_cidrs": ("GATEWAY_DENY_CIDRS", ""),
    # HTTPS on the public listener: PEM certificate (chain) and private key files. Both or neither.
    "tls_cert": ("GATEWAY_TLS_CERT", ""),
    "tls_key": ("GATEWAY_TLS_KEY", ""),
    # The SDS file through which Envoy reads (and re-reads) them; the launcher writes it.
    "tls_sds_path": ("GATEWAY_TLS_SDS_PATH", ""),
    # With TLS: a plain-HTTP listener on this port that only redirects to HTTPS ('' = none).
    "http_redirect_port": ("GATEWAY_HTTP_REDIRECT_PORT", ""),
    # One JSON access-log line per request on stdout; off where a load balancer logs already.
    "access_log": ("GATEWAY_ACCESS_LOG", "on"),
    # Slow clients: headers, then the whole request, must arrive within these (else JSON 408).
    # 30 s carries the 4 MiB body limit at ~1 Mbit/s.
    "request_headers_timeout": ("GATEWAY_REQUEST_HEADERS_TIMEOUT", "10s"),
    "request_timeout": ("GATEWAY_REQUEST_TIMEOUT", "30s"),
    # A client connection with no request in flight is closed after this; open ones are capped.
    "downstream_idle_timeout": ("GATEWAY_IDLE_TIMEOUT", "75s"),
    "max_downstream_connections": ("GATEWAY_MAX_CONNECTIONS", "10000"),
    # Slow upstream: an inference request without a response by then gets a JSON 504.
    "inference_timeout": ("GATEWAY_INFERENCE_TIMEOUT", "30s"),
}


def cors_origin_matchers(origins: str) -> str:
    """`*` or a comma-separated list of exact origins → Envoy StringMatchers (JSON is YAML)."""
    wanted = [o.strip() for o in origins.split(",") if o.strip()]
    if not wanted or "*" in wanted:
        return json.dumps([{"safe_regex": {"regex": ".*"}}])
    return json.dumps([{"exact": o} for o in wanted])


UNTRUSTED_HOST_BODY = json.dumps(
    {"error": "Invalid host", "detail": "This gateway does not serve the host named in this request.",
     "code": "VALIDATION_ERROR"}
)  # fmt: skip
EXT_AUTHZ_OFF = {
    "envoy.filters.http.ext_authz": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
        "disabled": True,
    }
}


def host_matching(hosts: str) -> tuple[str, str]:
    """The api virtual host's domains, and a first virtual host answering every other Host with
    a JSON 421 Misdirected Request (no key check, no route; the local-reply mappers leave 421
    bodies alone): '' when any host is served."""
    wanted = [h.strip().lower() for h in hosts.split(",") if h.strip()]
    if not wanted or "*" in wanted:
        return json.dumps(["*"]), ""
    refuse = {
        "name": "untrusted_host",
        "domains": ["*"],
        "typed_per_filter_config": EXT_AUTHZ_OFF,
        "routes": [{
            "match": {"prefix": "/"},
            "direct_response": {"status": 421, "body": {"inline_string": UNTRUSTED_HOST_BODY}},
            "response_headers_to_add": [
                {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for k, v in (("content-type", "application/json"), ("x-content-type-options", "nosniff"))
            ],
        }],
    }  # fmt: skip
    # Flow style inside the template's block list (JSON is YAML).
    return json.dumps(wanted), f"\n            - {json.dumps(refuse)}"


RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


def cidr_ranges(cidrs: str, variable: str) -> list[dict[str, object]]:
    """Envoy CidrRanges for comma-separated CIDRs (a bare address is a /32 or /128)."""
    ranges = []
    for raw in (c.strip() for c in cidrs.split(",")):
        if not raw:
            continue
        try:
            network = ipaddress.ip_network(raw, strict=False)
        except ValueError as exc:
            raise ValueError(f"{variable}: {raw!r} is not an IPv4/IPv6 address or CIDR ({exc})") from None
        ranges.append({"address_prefix": str(network.network_address), "prefix_len": network.prefixlen})
    return ranges


def rbac_filters(allow: str, deny: str) -> str:
    """RBAC filters (deny list first, then allow list) on the client address Envoy decided
    (remote_ip: after GATEWAY_TRUSTED_HOPS), as block-list items for the template; '' for none."""
    filters = []
    for action, cidrs, variable in (
        ("DENY", deny, "GATEWAY_DENY_CIDRS"),
        ("ALLOW", allow, "GATEWAY_ALLOW_CIDRS"),
    ):
        ranges = cidr_ranges(cidrs, variable)
        if not ranges:
            continue
        policy = {"permissions": [{"any": True}], "principals": [{"remote_ip": r} for r in ranges]}
        name = f"client_{action.lower()}_list"
        rules = {"action": action, "policies": {name: policy}}
        filters.append(
            {
                "name": f"envoy.filters.http.rbac.{action.lower()}",
                "typed_config": {"@type": RBAC, "rules": rules},
            }
        )
    return "".join(f"\n          - {json.dumps(f)}" for f in filters)


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


def public_manager(config: dict[str, Any]) -> dict[str, Any]:
    """The public listener's HTTP connection manager in a parsed bootstrap."""
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


# Fused mode: the ext_authz context extension naming a rate-limited route (authz_service/fused.py).
FUSED_ROUTE_EXTENSION = "rate_limit_route"
EXT_AUTHZ_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"


def fused_limits(config: dict[str, Any]) -> None:
    """Make the bootstrap (in place) fused mode: one sidecar call per request instead of two.

    Drops the ratelimit gRPC cluster; each route's rate limits checked before the upstream become
    the ext_authz context extension `rate_limit_route: <the generic_key value>`, which tells the authz
    service to decide that route's descriptors (token checks included). Policies applied when the
    stream is done (token charges) stay with the ratelimit filter, which now calls the authz service
    (it serves RateLimitService in fused mode) and only after a response; without such policies the
    filter goes. The ratelimit store-down mapper now matches the authz service's metadata.
    /v1/usage still goes to the ratelimit service's HTTP port.
    """
    resources = config["static_resources"]
    manager = public_manager(config)
    filters = {f["name"]: f["typed_config"] for f in manager["http_filters"]}
    # A Check now charges quota: retry it only where the ratelimit filter retried (never after a
    # reset, which may come after the call was counted).
    retry = filters[RATELIMIT]["rate_limit_service"]["grpc_service"]["retry_policy"]["retry_on"]
    filters[EXT_AUTHZ]["grpc_service"]["retry_policy"]["retry_on"] = retry
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] != "ratelimit"]
    stream_done = False
    for host in manager["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            # Copies throughout: YAML aliases share mappings between routes (the signed /v1/ route).
            per_filter = dict(route.get("typed_per_filter_config", {}))
            limits = per_filter.pop(RATELIMIT, None) or {}
            policies = limits.get("rate_limits", [])
            before = [p for p in policies if not p.get("apply_on_stream_done")]
            if not before:
                continue
            done = [p for p in policies if p.get("apply_on_stream_done")]
            if done:
                per_filter[RATELIMIT] = {**limits, "rate_limits": done}
                stream_done = True
            keys = [a["generic_key"] for p in before for a in p["actions"] if "generic_key" in a]
            extensions = {FUSED_ROUTE_EXTENSION: keys[0]["descriptor_value"]}
            # Check settings the route already has (the signed route's with_request_body) are kept.
            settings = per_filter.get(EXT_AUTHZ, {}).get("check_settings", {})
            route["typed_per_filter_config"] = {
                **per_filter,
                EXT_AUTHZ: {
                    "@type": EXT_AUTHZ_PER_ROUTE,
                    "check_settings": {**settings, "context_extensions": extensions},
                },
            }
    if stream_done:
        filters[RATELIMIT]["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"] = "authz"
    else:
        manager["http_filters"] = [f for f in manager["http_filters"] if f["name"] != RATELIMIT]
    for mapper in manager["local_reply_config"]["mappers"]:
        matcher = mapper["filter"].get("metadata_filter", {}).get("matcher", {})
        if matcher.get("filter") == RATELIMIT:
            matcher["filter"] = EXT_AUTHZ


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
    filled["allowed_domains"], filled["untrusted_hosts"] = host_matching(values["allowed_hosts"])
    filled["rbac_filters"] = rbac_filters(values["allow_cidrs"], values["deny_cidrs"])
    filled["usage_log"] = usage_log(values["usage_log_path"])
    # substitute() raises KeyError on a placeholder without a value: no half-rendered configs.
    text = string.Template(TEMPLATE.read_text()).substitute(filled)
    fused = values["fused_limits"].strip().lower() in ("1", "true", "yes", "on")
    batched = token_charge_mode(values["token_charge"], values["usage_log_path"]) == "usage"
    access_log = access_log_mode(values["access_log"])
    tls = bool(values["tls_cert"] or values["tls_key"])
    if tls:
        if not values["tls_cert"] or not values["tls_key"]:
            raise ValueError("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together: set both or neither")
        if not values["tls_sds_path"]:
            raise ValueError("GATEWAY_TLS_SDS_PATH: where to write the certificate's SDS file is not set")
    if not fused and not batched and access_log == "on" and not tls:
        return text  # the template as written
    # The rest is easier on the parsed bootstrap: parse once, change, write once.
    import yaml  # only here: the default rendering needs nothing outside the standard library

    config = yaml.safe_load(text)
    if batched:  # before fused_limits: with no stream-done policy left, fused mode drops the filter
        without_stream_done_charges(public_manager(config))
    if fused:
        fused_limits(config)
    with_access_log(config, access_log)
    if tls:
        with_tls(config, public_manager(config), values)
    return yaml.safe_dump(config, sort_keys=False, width=1000)


# GATEWAY_ACCESS_LOG=compact: one short line per client request for a console (make run).
COMPACT_LOG = (
    "%START_TIME(%H:%M:%S)% %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% -> %RESPONSE_CODE% "
    "%DURATION%ms flags=%RESPONSE_FLAGS% client=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
    "key=%REQ(X-GATEWAY-KEY-ID)%\n"
)


STDOUT_LOG = "envoy.access_loggers.stdout"


def access_log_mode(mode: str) -> str:
    """GATEWAY_ACCESS_LOG as one of on (JSON lines, the default), compact (one short text line
    per request) or off."""
    choice = mode.strip().lower()
    if choice in ("1", "true", "yes", "on", "json"):
        return "on"
    if choice in ("0", "false", "no", "off"):
        return "off"
    if choice == "compact":
        return choice
    raise ValueError(f"GATEWAY_ACCESS_LOG must be on, compact or off, got {mode!r}")


def with_access_log(config: dict[str, Any], mode: str) -> None:
    """The public listener's access log made compact or removed (the bootstrap changed in place)."""
    manager = public_manager(config)
    if mode == "compact":
        log_format = manager["access_log"][0]["typed_config"]["log_format"]
        log_format.pop("json_format")
        log_format["text_format_source"] = {"inline_string": COMPACT_LOG}
    elif mode == "off":  # the usage log, if any, stays
        manager["access_log"] = [log for log in manager["access_log"] if log["name"] != STDOUT_LOG]
        if not manager["access_log"]:
            manager.pop("access_log")


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

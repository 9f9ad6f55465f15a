"""The usage log (GATEWAY_USAGE_LOG) and who charges tokens (GATEWAY_TOKEN_CHARGE): the parts of
the rendering that serve usage_service (docs/usage.md). Used by render.py (a sibling file)."""

from __future__ import annotations

import json
from typing import Any

# The HTTP filters by name (render.py uses them too).
EXT_AUTHZ, RATELIMIT = "envoy.filters.http.ext_authz", "envoy.filters.http.ratelimit"

# The usage log's fields. The key id comes from ext_authz's dynamic metadata, never from a request
# header (a client can send x-gateway-key-id on routes where ext_authz is off); tokens from the
# adapter's x-gateway-tokens response header; RL in flags = refused by the ratelimit filter.
USAGE_LOG_FORMAT = {
    "time": "%START_TIME%", "key_id": "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:key_id)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "status": "%RESPONSE_CODE%",
    "tokens": "%RESP(X-GATEWAY-TOKENS)%", "flags": "%RESPONSE_FLAGS%",
    # The key's token limits, for GATEWAY_TOKEN_CHARGE=usage (the charge names its windows).
    "token_limits": "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:token_limits)%",
}  # fmt: skip


def usage_log(path: str) -> str:
    """GATEWAY_USAGE_LOG: a file access log of the requests ext_authz granted (those with a key id
    in its metadata), as a block-list item for the template's access_log; '' for none (or off)."""
    if path.strip().lower() in ("", "0", "off", "false", "no"):
        return ""
    key_id = {"filter": EXT_AUTHZ, "path": [{"key": "key_id"}], "value": {"present_match": True}}
    logger = {
        "name": "envoy.access_loggers.file",
        "filter": {"metadata_filter": {"matcher": key_id, "match_if_key_not_found": False}},
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"json_format": USAGE_LOG_FORMAT},
        },
    }
    return f"\n          - {json.dumps(logger)}"


def token_charge_mode(mode: str, usage_log_path: str) -> str:
    """GATEWAY_TOKEN_CHARGE as `envoy` or `usage` (which needs the usage log it charges from)."""
    mode = mode.strip().lower()
    if mode not in ("envoy", "usage"):
        raise ValueError(f"GATEWAY_TOKEN_CHARGE must be envoy or usage, got {mode!r}")
    if mode == "usage" and not usage_log_path:
        raise ValueError(
            "GATEWAY_TOKEN_CHARGE=usage charges tokens from the usage log: set GATEWAY_USAGE_LOG"
        )
    return mode


def without_stream_done_charges(manager: dict[str, Any]) -> None:
    """GATEWAY_TOKEN_CHARGE=usage: drop the policies Envoy applies when the stream is done (the token
    charges) from the public listener's routes (`manager`, changed in place); the usage service
    charges the tokens from the usage log instead."""
    for host in manager["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            limits = route.get("typed_per_filter_config", {}).get(RATELIMIT)
            if limits:
                kept = [p for p in limits["rate_limits"] if not p.get("apply_on_stream_done")]
                # A copy: YAML aliases share this mapping between the signed and the plain route.
                route["typed_per_filter_config"] = {
                    **route["typed_per_filter_config"],
                    RATELIMIT: {**limits, "rate_limits": kept},
                }

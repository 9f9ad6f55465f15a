"""Token limits: the names and the small text format the authz service, Envoy and this service share.

A key with a token limit gets, from ext_authz, the metadata `token_limits: "minute=1000,day=50000"`
(only the units it has). Envoy sends it in a token descriptor [(tokens, v1), (api_key, ID),
(token_limits, …)] twice per request: before the upstream with hits_addend 0 (a check: refused
when no token is left, nothing charged) and when the response is done with hits_addend = the
adapter's x-gateway-tokens header (a charge: always counted, even past the limit). See
docs/ratelimit.md#token-limits.
"""

from __future__ import annotations

from collections.abc import Mapping

LIMITS_KEY = "token_limits"  # the descriptor entry (and ext_authz metadata key) with the limits
ROUTE_KEY, ROUTE = "tokens", "v1"  # the descriptor's first entry: its counters are per key
TOKENS_HEADER = "x-gateway-tokens"  # the adapter's token count of a successful response
UNITS = ("minute", "day")


def format_limits(limits: Mapping[str, int | None]) -> str | None:
    """`minute=1000,day=50000` for the units that have a limit; None when none has."""
    parts = [f"{unit}={limits[unit]}" for unit in UNITS if limits.get(unit)]
    return ",".join(parts) or None


def parse_limits(text: str) -> dict[str, int]:
    """The unit → limit pairs of `format_limits`' text; malformed or non-positive parts are skipped."""
    found: dict[str, int] = {}
    for part in text.split(","):
        unit, _, raw = part.strip().partition("=")
        try:
            limit = int(float(raw))
        except ValueError:
            continue
        if unit in UNITS and limit >= 1:
            found[unit] = limit
    return found


def entries(key_id: str) -> tuple[tuple[str, str], ...]:
    """What a key's token counters are keyed by (the descriptor without its limits)."""
    return ((ROUTE_KEY, ROUTE), ("api_key", key_id))

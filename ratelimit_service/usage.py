"""Current usage of one API key, without charging it: what GET /v1/usage reports (seed 000).

Importable by other services (e.g. the authz service's /auth/profile):

    store = ratelimit_service.store.store_from_url(redis_url)
    body = await current_usage(store, key_id="key_…", plan="free", overrides={"minute": 70})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ratelimit_service import tokens
from ratelimit_service.config import DEFAULT_CONFIG, RateLimitConfig, load_config
from ratelimit_service.config.model import DomainConfig
from ratelimit_service.limiter import Limiter
from ratelimit_service.plan import RequestDescriptor
from ratelimit_service.store.base import WindowStore
from ratelimit_service.windows import WindowOutcome

DEFAULT_DOMAIN = "gateway"


def usage_entries(domain: DomainConfig, key_id: str, plan: str) -> tuple[tuple[str, str], ...]:
    """The domain's usage descriptor with {key_id} and {plan} filled in."""
    return tuple(
        (key, value.replace("{key_id}", key_id).replace("{plan}", plan))
        for key, value in domain.usage_descriptor
    )


def usage_body(key_id: str, states: Sequence[WindowOutcome], now: datetime | None = None) -> dict[str, Any]:
    """Seed 000's shape: {user_id, usage: {requests_last_<unit>…, timestamp}, limits: {per_<unit>…}};
    a key with token limits adds tokens_last_<unit> to usage and tokens_per_<unit> to limits."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    requests = [s for s in states if not s.window.tokens]
    usage: dict[str, Any] = {f"requests_last_{s.window.unit}": s.used() for s in requests}
    limits = {f"per_{s.window.unit}": s.window.limit for s in requests}
    for state in states:
        if state.window.tokens:
            usage[f"tokens_last_{state.window.unit}"] = state.used()
            limits[f"tokens_per_{state.window.unit}"] = state.window.limit
    usage["timestamp"] = stamp
    return {"user_id": key_id, "usage": usage, "limits": limits}


def token_descriptor(key_id: str, token_limits: Mapping[str, int] | None) -> RequestDescriptor | None:
    """The key's token descriptor as Envoy sends it before the upstream (a check), if it has limits."""
    text = tokens.format_limits(token_limits or {})
    if text is None:
        return None
    return RequestDescriptor((*tokens.entries(key_id), (tokens.LIMITS_KEY, text)), hits=0)


async def limiter_usage(
    limiter: Limiter,
    key_id: str,
    plan: str = "free",
    overrides: Mapping[str, int] | None = None,
    domain: str = DEFAULT_DOMAIN,
    token_limits: Mapping[str, int] | None = None,
) -> dict[str, Any] | None:
    """The usage body for a key, or None when the domain is not configured."""
    config = limiter.config.domain(domain)
    if config is None:
        return None
    tokens_of_key = token_descriptor(key_id, token_limits)
    states = await limiter.usage(domain, usage_entries(config, key_id, plan), overrides, tokens_of_key)
    return usage_body(key_id, states)


async def current_usage(
    store: WindowStore,
    key_id: str,
    plan: str = "free",
    overrides: Mapping[str, int] | None = None,
    config: RateLimitConfig | None = None,
    domain: str = DEFAULT_DOMAIN,
    token_limits: Mapping[str, int] | None = None,
) -> dict[str, Any] | None:
    """Like GET /v1/usage for `key_id`; `overrides` are its own limits by unit (beat the config);
    `token_limits` its effective token limits by unit (minute, day)."""
    limiter = Limiter(config or load_config(DEFAULT_CONFIG), store)
    return await limiter_usage(limiter, key_id, plan, overrides, domain, token_limits)

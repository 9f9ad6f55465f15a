"""Current usage of one API key, without charging it: what GET /v1/usage reports (seed 000).

Importable by other services (e.g. the authz service's /auth/profile):

    store = ratelimit_service.store.store_from_url(redis_url)
    body = await current_usage(store, key_id="key_…", plan="free", overrides={"minute": 70})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ratelimit_service.config import DEFAULT_CONFIG, RateLimitConfig, load_config
from ratelimit_service.config.model import DomainConfig
from ratelimit_service.limiter import Limiter
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
    """Seed 000's shape: {user_id, usage: {requests_last_<unit>…, timestamp}, limits: {per_<unit>…}}."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    usage: dict[str, Any] = {f"requests_last_{s.window.unit}": s.used() for s in states}
    usage["timestamp"] = stamp
    limits = {f"per_{s.window.unit}": s.window.limit for s in states}
    return {"user_id": key_id, "usage": usage, "limits": limits}


async def limiter_usage(
    limiter: Limiter,
    key_id: str,
    plan: str = "free",
    overrides: Mapping[str, int] | None = None,
    domain: str = DEFAULT_DOMAIN,
) -> dict[str, Any] | None:
    """The usage body for a key, or None when the domain is not configured."""
    config = limiter.config.domain(domain)
    if config is None:
        return None
    states = await limiter.usage(domain, usage_entries(config, key_id, plan), overrides)
    return usage_body(key_id, states)


async def current_usage(
    store: WindowStore,
    key_id: str,
    plan: str = "free",
    overrides: Mapping[str, int] | None = None,
    config: RateLimitConfig | None = None,
    domain: str = DEFAULT_DOMAIN,
) -> dict[str, Any] | None:
    """Like GET /v1/usage for `key_id`; `overrides` are its own limits by unit (beat the config)."""
    limiter = Limiter(config or load_config(DEFAULT_CONFIG), store)
    return await limiter_usage(limiter, key_id, plan, overrides, domain)

"""GATEWAY_TOKEN_CHARGE=usage: the tokens of each committed batch charged to the keys' token
windows, one limiter call per key per batch instead of one gRPC call per request.

Charged after the batch's records are committed, by the rate-limit service's own limiter
(ratelimit_service.embedded: same Redis, same Lua script, same token windows). A charge that
fails (Redis down) is logged and counted, not retried: token limits are a budget that may be
overshot (docs/ratelimit.md#token-limits), the usage records are the bill and stay exact.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ratelimit_service.embedded import (
    DEFAULT_DOMAIN,
    TOKEN_LIMITS_KEY,
    Limiter,
    RequestDescriptor,
    build_limiter,
    token_entries,
)
from usage_service import metrics

log = logging.getLogger("usage_service.charge")
STORE_TIMEOUT_S = 1.0  # off the request path: a slower store only delays the next batch


class TokenCharger:
    def __init__(self, limiter: Limiter, domain: str = DEFAULT_DOMAIN) -> None:
        self.limiter, self.domain = limiter, domain
        self._failing = False

    @classmethod
    def from_url(cls, redis_url: str) -> TokenCharger:
        return cls(build_limiter(redis_url, STORE_TIMEOUT_S, remember_denials=False))

    async def charge(self, charges: Mapping[str, tuple[int, str]]) -> None:
        """Charge each key (id → (tokens, its token limits)); never raises. A store failure loses
        that charge and shows as ratelimit_store_errors_total (the limiter's own count)."""
        for key_id, (tokens, limits) in charges.items():
            descriptor = RequestDescriptor((*token_entries(key_id), (TOKEN_LIMITS_KEY, limits)), hits=tokens)
            try:
                await self.limiter.decide(self.domain, [descriptor])
            except Exception as exc:  # not the store (the limiter absorbs those): say so once
                metrics.TOKEN_CHARGE_ERRORS.inc()
                if not self._failing:
                    log.warning("token charge failed (tokens not charged to the limits): %r", exc)
                self._failing = True
                continue
            metrics.TOKENS_CHARGED.inc(tokens)
            self._failing = False

    async def close(self) -> None:
        await self.limiter.store.close()

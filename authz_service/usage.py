"""Current usage of a key, read with the ratelimit service's own reader (ratelimit_service.usage).

The counters, their key names and the window maths belong to ratelimit_service; reading
them through its Limiter (peek: nothing is charged) means the profile shows exactly what
the limiter sees. The key's effective limits are passed as overrides, as Envoy does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from authz_service.plans import Limits, token_limits
from ratelimit_service.embedded import Limiter, build_limiter, limiter_usage


class UsageReader:
    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    @classmethod
    def from_url(cls, redis_url: str, config: Path | None = None) -> UsageReader:
        return cls(build_limiter(redis_url, 0.5, config, remember_denials=False))

    async def read(self, key_id: str, plan: str, limits: Limits) -> dict[str, Any] | None:
        """{"usage": {"requests_last_minute", "requests_last_hour", ["tokens_last_minute", …,] "timestamp"},
        "limits": {...}} or None."""
        overrides = {"minute": limits.per_minute, "hour": limits.per_hour}
        tokens = {unit: n for unit, n in token_limits(limits).items() if n is not None}
        return await limiter_usage(self._limiter, key_id, plan, overrides, token_limits=tokens)

    async def close(self) -> None:
        await self._limiter.store.close()

"""Each signature is accepted once: a shared memory of the signatures already seen.

Redis (the replicas share it) in production; a process-local memory when no Redis is
configured (one replica only). A signature is remembered for twice the timestamp tolerance,
so it expires only after its timestamp is refused anyway.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

from authz_service.signing import TOLERANCE_SECONDS
from common.redis_client import client_from_url

REMEMBER_SECONDS = 2 * TOLERANCE_SECONDS
_PREFIX = "authz:sig:"


class ReplayGuard(Protocol):
    async def first_use(self, token: str) -> bool:
        """True the first time `token` is seen within REMEMBER_SECONDS; raises when unsure."""
        ...

    async def close(self) -> None: ...


class RedisReplayGuard:
    def __init__(self, url: str, timeout: float = 0.1) -> None:
        # Connects on first use: a gateway without signing keys never opens a connection.
        self._redis = client_from_url(url, timeout, max_connections=16)

    async def first_use(self, token: str) -> bool:
        return bool(await self._redis.set(_PREFIX + token, b"1", nx=True, ex=REMEMBER_SECONDS))

    async def close(self) -> None:
        await self._redis.aclose()


class MemoryReplayGuard:
    """Bounded: beyond `capacity` live signatures the oldest are forgotten (logged by the caller)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._capacity = capacity

    async def first_use(self, token: str) -> bool:
        now = time.monotonic()
        while self._seen and (next(iter(self._seen.values())) <= now or len(self._seen) >= self._capacity):
            self._seen.popitem(last=False)
        if token in self._seen:
            return False
        self._seen[token] = now + REMEMBER_SECONDS
        return True

    async def close(self) -> None:
        self._seen.clear()


def guard_from_url(url: str) -> ReplayGuard:
    """Redis for a redis URL (every scheme the services take), process memory for '' or memory://."""
    if not url or url.startswith("memory://"):
        return MemoryReplayGuard()
    return RedisReplayGuard(url)

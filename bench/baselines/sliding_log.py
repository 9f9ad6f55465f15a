"""Sliding-window logs the way seed 000's gateway keeps them: per key, a timestamp per request.

Two stores, as the seed describes (in memory by default, "use Redis for distributed rate
limiting" in production): deques in the process, or one Redis sorted set per key and window
updated in a MULTI transaction (one round trip).
"""

from __future__ import annotations

import time
import uuid
from collections import deque

import redis.asyncio as redis

WINDOWS = (("minute", 60.0), ("hour", 3600.0))


class MemoryLog:
    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self._logs: dict[str, dict[str, deque[float]]] = {}

    async def allow(self, key: str) -> str | None:
        """Record a request for `key`; the name of the window it exceeds (not recorded) or None."""
        now = time.time()
        logs = self._logs.setdefault(key, {name: deque() for name, _ in WINDOWS})
        for name, seconds in WINDOWS:
            log = logs[name]
            while log and log[0] <= now - seconds:
                log.popleft()
            if len(log) >= self.limits[name]:
                return name
        for name, _ in WINDOWS:
            logs[name].append(now)
        return None

    async def close(self) -> None:
        pass


class RedisLog:
    def __init__(self, url: str, limits: dict[str, int]) -> None:
        self.limits = limits
        self.redis = redis.Redis.from_url(url)

    async def allow(self, key: str) -> str | None:
        now = time.time()
        member = f"{now}:{uuid.uuid4().hex}"
        pipe = self.redis.pipeline(transaction=True)
        for name, seconds in WINDOWS:
            zset = f"ratelimit:{key}:{name}"
            pipe.zremrangebyscore(zset, 0, now - seconds)
            pipe.zcard(zset)
            pipe.zadd(zset, {member: now})
            pipe.expire(zset, int(seconds))
        replies = await pipe.execute()
        counts = replies[1::4]  # ZCARD before this request was added, per window
        for (name, _), count in zip(WINDOWS, counts, strict=True):
            if count >= self.limits[name]:
                await self.redis.zrem(f"ratelimit:{key}:minute", member)
                await self.redis.zrem(f"ratelimit:{key}:hour", member)
                return name
        return None

    async def close(self) -> None:
        await self.redis.aclose()

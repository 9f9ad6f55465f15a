"""Where counters live, chosen by URL scheme (in the spirit of alisaifee/limits):
memory://, redis://, rediss://, unix://, redis+cluster://, redis+sentinel://."""

from __future__ import annotations

from ratelimit_service.store.base import StoreResult, StoreWindow, WindowStore
from ratelimit_service.store.memory import MemoryStore

SCHEMES = ("memory", "redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel")


def store_from_url(url: str, timeout: float = 0.1) -> WindowStore:
    """A store for `url`; ValueError names what is wrong with it."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported store URL {url!r}: use one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme == "memory":
        return MemoryStore()
    from ratelimit_service.store.redis import redis_store_from_url  # redis-py only when needed

    return redis_store_from_url(url, timeout)


__all__ = ["MemoryStore", "StoreResult", "StoreWindow", "WindowStore", "store_from_url"]

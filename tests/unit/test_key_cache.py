from __future__ import annotations

import time

from authz_service.cache import KeyCache, TTLCache


def test_ttl_cache_expires_and_is_bounded() -> None:
    cache: TTLCache[int] = TTLCache(max_entries=2, ttl_seconds=0.05)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert len(cache) == 2
    assert cache.get("a", None) is None  # oldest evicted
    assert cache.get("c") == 3
    time.sleep(0.06)
    assert cache.get("c", None) is None


def test_negative_entries_cannot_evict_known_keys() -> None:
    cache: KeyCache[str] = KeyCache(size=10, ttl=60, negative_size=3, negative_ttl=60)
    cache.remember("good", "record")
    for i in range(1000):
        cache.remember(f"random-{i}", None)
    assert cache.lookup("good") == "record"
    assert cache.lookup("random-999") is None
    assert cache.lookup("random-0") is KeyCache.MISS  # pushed out of the small negative map
    assert cache.lookup("never-seen") is KeyCache.MISS

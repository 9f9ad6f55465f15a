"""A small bounded TTL cache for key lookups, with separate room for negative answers.

Negative entries (unknown keys) live in their own, smaller map with a shorter TTL, so a
flood of random keys can neither evict good keys nor reach Postgres more than once each.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")

_MISS = object()


class TTLCache(Generic[V]):
    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        self._max = max_entries
        self._ttl = ttl_seconds
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str, default: object = _MISS) -> V | object:
        item = self._items.get(key)
        if item is None:
            return default
        expires, value = item
        if expires < time.monotonic():
            del self._items[key]
            return default
        return value

    def put(self, key: str, value: V) -> None:
        self._items[key] = (time.monotonic() + self._ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class KeyCache(Generic[V]):
    """Positive and negative lookups kept apart. `lookup` returns MISS, None (unknown) or a value.

    `generation` moves on every invalidation. A loader reads it before going to the store and
    passes it to `remember`: an answer that raced with a change (the store may have replied
    with the row as it was before the change committed) is then returned but not cached.
    """

    MISS = _MISS

    def __init__(
        self, size: int = 10_000, ttl: float = 30.0, negative_size: int = 10_000, negative_ttl: float = 5.0
    ):
        self._known: TTLCache[V] = TTLCache(size, ttl)
        self._unknown: TTLCache[bool] = TTLCache(negative_size, negative_ttl)
        self.generation = 0

    def lookup(self, key_hash: str) -> V | object | None:
        value = self._known.get(key_hash)
        if value is not _MISS:
            return value
        if self._unknown.get(key_hash) is not _MISS:
            return None
        return _MISS

    def remember(self, key_hash: str, value: V | None, generation: int | None = None) -> None:
        if generation is not None and generation != self.generation:
            return
        if value is None:
            self._unknown.put(key_hash, True)
        else:
            self._known.put(key_hash, value)

    def forget(self, key_hash: str) -> None:
        """Drop one key (both maps): it changed in the store."""
        self._known.pop(key_hash)
        self._unknown.pop(key_hash)
        self.generation += 1

    def clear(self) -> None:
        """Drop everything: changes may have been missed (the invalidation feed reconnected)."""
        self._known.clear()
        self._unknown.clear()
        self.generation += 1

    def sizes(self) -> tuple[int, int]:
        return len(self._known), len(self._unknown)

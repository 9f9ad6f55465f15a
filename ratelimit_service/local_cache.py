"""Local over-limit cache: once a window denies, answer from memory until it frees a slot.

Keyed by (counter key, limit): a new limit (config reload, per-key override) starts afresh.
Entries end at the moment the store said the window frees again, measured on this
process's monotonic clock from when the reply arrived, so the cache can only deny a little
longer than the store would (by the round trip), never admit more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ratelimit_service.windows import Window

MAX_ENTRIES = 100_000


@dataclass(slots=True)
class CachedDenial:
    """A window known to be over its limit until `until` (monotonic seconds)."""

    window: Window
    until: float
    clock: Callable[[], float]
    denials: int = 1  # requests denied since it went over (progressive backoff's "overage")

    def admits(self, hits: int) -> bool:
        return False

    def remaining(self) -> int:
        return 0

    def used(self) -> int:
        return self.window.limit

    def retry_after_ms(self, hits: int) -> int:
        return max(1, math.ceil((self.until - self.clock()) * 1000))

    def reset_seconds(self) -> int:
        return max(1, math.ceil(self.until - self.clock()))


class OverLimitCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[tuple[str, int], CachedDenial] = {}

    def get(self, key: str, limit: int) -> CachedDenial | None:
        entry = self._entries.get((key, limit))
        if entry is None:
            return None
        if entry.until <= self.clock():
            del self._entries[key, limit]
            return None
        return entry

    def deny_until(self, key: str, window: Window, wait_ms: int) -> CachedDenial:
        """Remember a denial lasting `wait_ms`; a repeat denial keeps counting the overage."""
        previous = self._entries.get((key, window.limit))
        entry = CachedDenial(window, self.clock() + wait_ms / 1000, self.clock)
        entry.denials = previous.denials + 1 if previous is not None else 1
        if self.max_entries <= 0:
            return entry  # cache disabled: every request asks the store
        if len(self._entries) >= self.max_entries and previous is None:
            self._evict()
        self._entries[key, window.limit] = entry
        return entry

    def _evict(self) -> None:
        now = self.clock()
        for k in [k for k, e in self._entries.items() if e.until <= now]:
            del self._entries[k]
        while len(self._entries) >= self.max_entries:  # still full: drop the oldest entries
            del self._entries[next(iter(self._entries))]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

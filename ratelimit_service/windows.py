"""Pure window maths for the three algorithms (no I/O). The Lua script and the in-memory
store apply the same admission rules; these classes interpret what they return.

- sliding_window: two-bucket weighted counter. A window of W seconds keeps one counter per
  aligned bucket of W seconds; the count "now" is `prev * (W - elapsed) / W + cur`, where
  `elapsed` is the time since the current bucket began. O(1) memory per key and window.
- sliding_log: an exact log of admitted requests; the count is the entries in (now - W, now].
- fixed_window: Lyft's aligned windows; the count resets at each multiple of W.

A request of `hits` is admitted when every enforced window's count + hits <= limit; a
rejected request is not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

# envoyproxy/ratelimit's units and lengths (a month is 30 days, a year 365).
UNIT_SECONDS = {
    "second": 1, "minute": 60, "hour": 3600, "day": 86400,
    "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400,
}  # fmt: skip
ALGORITHMS = ("sliding_window", "sliding_log", "fixed_window")


@dataclass(frozen=True, slots=True)
class Window:
    unit: str  # "minute", "hour", ... (names headers and the 429 body)
    limit: int
    algorithm: str = "sliding_window"
    tokens: bool = False  # counts tokens (ratelimit_service.tokens), not requests

    @property
    def seconds(self) -> int:
        return UNIT_SECONDS[self.unit]


class WindowOutcome(Protocol):
    """What a store saw for one window, whatever the algorithm."""

    @property
    def window(self) -> Window: ...
    def admits(self, hits: int) -> bool: ...
    def remaining(self) -> int: ...
    def used(self) -> int: ...
    def retry_after_ms(self, hits: int) -> int: ...
    def reset_seconds(self) -> int: ...


@dataclass(frozen=True, slots=True)
class WindowState:
    """sliding_window: bucket counters and where in the current bucket `now` is."""

    window: Window
    prev: int
    cur: int  # includes this request's hits when it was admitted
    elapsed_ms: int

    @property
    def window_ms(self) -> int:
        return self.window.seconds * 1000

    def estimate(self) -> float:
        w = self.window_ms
        return self.prev * (w - self.elapsed_ms) / w + self.cur

    def remaining(self) -> int:
        return max(0, math.floor(self.window.limit - self.estimate() + 1e-9))

    def used(self) -> int:
        """The weighted count rounded up, so that used + remaining == limit below the limit."""
        return math.ceil(self.estimate() - 1e-9)

    def admits(self, hits: int) -> bool:
        # Integer form of estimate() + hits <= limit (the Lua script uses the same).
        w = self.window_ms
        return self.prev * (w - self.elapsed_ms) + (self.cur + hits) * w <= self.window.limit * w

    def retry_after_ms(self, hits: int) -> int:
        """Milliseconds until `hits` more requests would be admitted (0 if they are now)."""
        limit, w, e = self.window.limit, self.window_ms, self.elapsed_ms
        if hits > limit:
            raise ValueError(f"{hits} hits can never fit a limit of {limit}")
        if self.admits(hits):
            return 0
        room = limit - hits - self.cur
        if room >= 0:
            # The current bucket fits; wait for the previous one's weight to decay enough.
            return max(0, _ceil_div(w * (self.prev - room), self.prev) - e) if self.prev else 0
        # The current bucket alone is too full: wait for it to become the previous one,
        # then for its weight to decay until `hits` fit.
        return (w - e) + _ceil_div(w * (self.cur - (limit - hits)), self.cur)

    def seconds_to_bucket_end(self) -> int:
        return max(1, math.ceil((self.window_ms - self.elapsed_ms) / 1000))

    def reset_seconds(self) -> int:
        return self.seconds_to_bucket_end()


class _CountedState:
    """Shared by the exact-count states: the store reports `count` including admitted hits."""

    __slots__ = ()
    window: Window
    count: int

    def admits(self, hits: int) -> bool:
        return self.count + hits <= self.window.limit

    def remaining(self) -> int:
        return max(0, self.window.limit - self.count)

    def used(self) -> int:
        return self.count


@dataclass(frozen=True, slots=True)
class FixedWindowState(_CountedState):
    """fixed_window: the count of the current aligned window and how far into it `now` is."""

    window: Window
    count: int  # includes this request's hits when it was admitted
    elapsed_ms: int

    def retry_after_ms(self, hits: int) -> int:
        return 0 if self.admits(hits) else self.window.seconds * 1000 - self.elapsed_ms

    def reset_seconds(self) -> int:
        return max(1, math.ceil((self.window.seconds * 1000 - self.elapsed_ms) / 1000))


@dataclass(frozen=True, slots=True)
class LogState(_CountedState):
    """sliding_log: the exact count in (now - W, now] and when the entry that matters leaves.

    `frees_in_ms` is the time until the oldest entry leaves the window; for a denial, until
    enough entries have left for the request's hits to fit (the store computes it).
    """

    window: Window
    count: int  # includes this request's hits when it was admitted
    frees_in_ms: int

    def retry_after_ms(self, hits: int) -> int:
        if hits > self.window.limit:
            return self.window.seconds * 1000
        return 0 if self.admits(hits) else self.frees_in_ms

    def reset_seconds(self) -> int:
        return max(1, math.ceil((self.frees_in_ms or self.window.seconds * 1000) / 1000))


def _ceil_div(a: int, b: int) -> int:
    """Exact integer ceil(a / b): float maths would be off by a millisecond at the edges."""
    return -(-a // b)


def ceil_seconds(ms: int) -> int:
    """Whole seconds a client should wait: never 0 for a denial."""
    return max(1, math.ceil(ms / 1000))


def safe_retry_after_ms(state: WindowOutcome, hits: int) -> int:
    """retry_after_ms, with a whole window for a request larger than the limit (never fits)."""
    try:
        return state.retry_after_ms(hits)
    except ValueError:
        return state.window.seconds * 1000


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    states: tuple[WindowOutcome, ...]
    hits: int = 1

    def blocking(self) -> WindowOutcome | None:
        """The denying window that frees last (the one the client must wait for)."""
        if self.allowed:
            return None
        denied = [s for s in self.states if not s.admits(self.hits)]
        return max(denied, key=lambda s: safe_retry_after_ms(s, self.hits), default=None)

    def tightest(self) -> WindowOutcome:
        """The window with the fewest requests left: what X-RateLimit-Limit/Remaining describe."""
        return min(self.states, key=lambda s: (s.remaining(), s.window.seconds))

    def retry_after(self) -> int:
        blocking = self.blocking()
        return ceil_seconds(safe_retry_after_ms(blocking, self.hits)) if blocking else 0

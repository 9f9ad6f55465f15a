"""Pure sliding-window maths (no I/O). The Redis Lua script applies the same admission rule.

Two-bucket weighted counter: a window of W seconds keeps one counter per aligned bucket
of W seconds; the count "now" is `prev * (W - elapsed) / W + cur`, where `elapsed` is the
time since the current bucket began. A request of `hits` is admitted when every window's
count + hits <= limit; a rejected request is not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True, slots=True)
class Window:
    unit: str  # "minute", "hour", ... (names headers and the 429 body)
    limit: int

    @property
    def seconds(self) -> int:
        return UNIT_SECONDS[self.unit]


@dataclass(frozen=True, slots=True)
class WindowState:
    """What the store saw for one window: bucket counters and where in the bucket `now` is."""

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

    def admits(self, hits: int) -> bool:
        return self.estimate() + hits <= self.window.limit

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


def _ceil_div(a: int, b: int) -> int:
    """Exact integer ceil(a / b): float maths would be off by a millisecond at the edges."""
    return -(-a // b)


def ceil_seconds(ms: int) -> int:
    """Whole seconds a client should wait: never 0 for a denial."""
    return max(1, math.ceil(ms / 1000))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    states: tuple[WindowState, ...]
    hits: int = 1

    def blocking(self) -> WindowState | None:
        """The denying window that frees last (the one the client must wait for)."""
        denied = [s for s in self.states if not s.admits(self.hits)] if not self.allowed else []
        return max(denied, key=lambda s: s.retry_after_ms(self.hits), default=None)

    def tightest(self) -> WindowState:
        """The window with the fewest requests left: what X-RateLimit-Limit/Remaining describe."""
        return min(self.states, key=lambda s: (s.remaining(), s.window.seconds))

    def retry_after(self) -> int:
        blocking = self.blocking()
        return ceil_seconds(blocking.retry_after_ms(self.hits)) if blocking else 0

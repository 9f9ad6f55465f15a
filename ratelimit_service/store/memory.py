"""In-memory store with the Lua script's semantics, for unit tests and single-process runs.

Each method mirrors a branch of windows.lua line for line: the same integers, the same
"charge only when every enforced window fits". Idle keys are swept once they expire.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

from ratelimit_service.store.base import CHARGE, CHECK, StoreResult, StoreWindow, decode, request_token

SWEEP_EVERY = 10_000  # operations between sweeps of expired keys


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class MemoryStore:
    def __init__(self, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.clock_ms = clock_ms
        # key → (expires_at_ms, state): [bucket, prev, cur] | [bucket, count] | sorted [(ts, member)]
        self.data: dict[str, tuple[int, list]] = {}
        self._ops = 0

    async def apply(
        self, windows: Sequence[StoreWindow], hits: int = 1, *, peek: bool = False, now_ms: int | None = None
    ) -> StoreResult:
        return self.apply_now(windows, hits, peek=peek, now_ms=now_ms)

    def apply_now(
        self, windows: Sequence[StoreWindow], hits: int = 1, *, peek: bool = False, now_ms: int | None = None
    ) -> StoreResult:
        now = self.clock_ms() if now_ms is None else now_ms
        self._ops += 1
        if self._ops % SWEEP_EVERY == 0:
            self.sweep(now)
        reply: list[int] = [1]
        fits: list[bool] = []
        quota_fits: dict[int, bool] = {}  # quota group → every window of it fits
        for spec in windows:
            w = spec.window.seconds * 1000
            fit, values = self._read(spec, now, w, 1 if spec.mode == CHECK else hits, peek)
            fits.append(fit)
            reply += [*values, int(fit)]
            if spec.quota:
                quota_fits[spec.quota] = quota_fits.get(spec.quota, True) and fit
            elif spec.enforced and spec.mode != CHARGE and not fit:
                reply[0] = 0
        if quota_fits and not any(quota_fits.values()):
            reply[0] = 0
        token = request_token()
        for i, spec in enumerate(windows):
            charge = not peek and reply[0] == 1 and (fits[i] or spec.mode == CHARGE) and spec.mode != CHECK
            self._finish(spec, i, reply, charge, fits[i], now, hits, token)
        return decode(windows, reply)

    def _live(self, key: str, now: int) -> list | None:
        entry = self.data.get(key)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def _read(self, spec: StoreWindow, now: int, w: int, hits: int, peek: bool) -> tuple[bool, list[int]]:
        limit, bucket = spec.window.limit, now // w
        elapsed = now - bucket * w
        stored = self._live(spec.key, now)
        algorithm = spec.window.algorithm
        if algorithm == "sliding_window":
            prev = cur = 0
            if stored is not None and stored[0] == bucket:
                prev, cur = stored[1], stored[2]
            elif stored is not None and stored[0] == bucket - 1:
                prev = stored[2]
            return prev * (w - elapsed) + (cur + hits) * w <= limit * w, [prev, cur, elapsed]
        if algorithm == "fixed_window":
            count = stored[1] if stored is not None and stored[0] == bucket else 0
            return count + hits <= limit, [count, elapsed, 0]
        log = stored if stored is not None else []
        start = bisect.bisect_right(log, (now - w, "\uffff"))  # first entry with ts > now - w
        if not peek and start:
            del log[:start]
            start = 0
        count = len(log) - start
        return count + hits <= limit, [count, 0, 0]

    def _finish(
        self,
        spec: StoreWindow,
        i: int,
        reply: list[int],
        charge: bool,
        fit: bool,
        now: int,
        hits: int,
        token: str,
    ) -> None:
        w = spec.window.seconds * 1000
        bucket = now // w
        a = 4 * i + 1
        algorithm = spec.window.algorithm
        if charge and algorithm == "sliding_window":
            reply[a + 1] += hits
            self.data[spec.key] = (now + 2 * w, [bucket, reply[a], reply[a + 1]])
        elif charge and algorithm == "fixed_window":
            reply[a] += hits
            self.data[spec.key] = (now + w - reply[a + 1] + 1000, [bucket, reply[a]])
        elif algorithm == "sliding_log":
            log = self._live(spec.key, now) or []
            if charge:
                for j in range(1, hits + 1):
                    # As ZADD: a counter named twice in one request (a shared wildcard, a repeated
                    # descriptor) gets the same members again, so it is charged once.
                    entry = (now, f"{token}:{j}")
                    at = bisect.bisect_left(log, entry)
                    if at == len(log) or log[at] != entry:
                        log.insert(at, entry)
                self.data[spec.key] = (now + w, log)
                reply[a] += hits
            count, limit = reply[a], spec.window.limit
            j = 1 if fit else count - limit + hits
            start = bisect.bisect_right(log, (now - w, "\uffff"))  # first entry still in the window
            if count > 0 and j <= count:
                reply[a + 1] = log[start + j - 1][0] + w - now
            elif count > 0 or not fit:
                reply[a + 1] = w

    def sweep(self, now: int | None = None) -> int:
        now = self.clock_ms() if now is None else now
        expired = [k for k, (expires, _) in self.data.items() if expires <= now]
        for key in expired:
            del self.data[key]
        return len(expired)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self.data.clear()

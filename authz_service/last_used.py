"""last_used_at in batches: the hot path only adds a key id to a set; a task flushes it.

One UPDATE per interval for all keys seen, instead of a write per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

Flush = Callable[[Iterable[str]], Awaitable[None]]


class LastUsedRecorder:
    def __init__(self, interval_seconds: float, max_pending: int = 100_000) -> None:
        self.interval = interval_seconds
        self._seen: set[str] = set()
        self._max_pending = max_pending

    def touch(self, key_id: str) -> None:
        if len(self._seen) < self._max_pending:  # bounded even when the store is down for long
            self._seen.add(key_id)

    def pending(self) -> int:
        return len(self._seen)

    async def flush(self, write: Flush) -> int:
        """Write the ids seen so far; on failure keep them for the next round. Returns how many."""
        if not self._seen:
            return 0
        batch, self._seen = self._seen, set()
        try:
            await write(sorted(batch))
        except Exception as exc:
            log.warning("could not record last use of %d key(s): %s", len(batch), exc)
            self._seen |= batch
            return 0
        return len(batch)

    async def run(self, write: Flush) -> None:
        """Flush every `interval` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(self.interval)
                await self.flush(write)
        finally:
            await asyncio.shield(self.flush(write))

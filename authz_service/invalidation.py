"""Cache invalidation for every replica: LISTEN on the channel the api_keys trigger NOTIFYs.

Each notification carries a key hash (or `*` after a TRUNCATE). The listener uses its own
connection, outside the lookup pool, and reconnects when it drops. After every (re)connect
the whole cache is cleared, because changes made while nobody listened were not heard.
While disconnected, cached answers stay valid until their TTL (bounded staleness), so a
Postgres outage does not lock out keys that were already cached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

ALL_KEYS = "*"


class InvalidationListener:
    def __init__(
        self,
        dsn: str,
        channel: str,
        forget: Callable[[str], None],
        forget_all: Callable[[], None],
        ping_seconds: float = 5.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self._forget = forget
        self._forget_all = forget_all
        self.ping_seconds = ping_seconds
        self.retry_seconds = retry_seconds
        self.listening = asyncio.Event()
        self.notifications = 0
        self._failing = False  # log an outage once, not on every retry

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        if payload == ALL_KEYS:
            self._forget_all()
        else:
            self._forget(payload)

    async def _listen_once(self) -> None:
        """Connect, LISTEN, clear the cache, then watch the connection until it fails."""
        conn = await asyncpg.connect(self.dsn, timeout=5)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self.channel, self._on_notify)
            self._forget_all()
            self.listening.set()
            self._failing = False
            log.info("listening for key changes on %r", self.channel)
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.ping_seconds)
                except TimeoutError:
                    # A dead peer may never close the socket: prove the connection still works.
                    await conn.fetchval("SELECT 1", timeout=self.ping_seconds)
        finally:
            self.listening.clear()
            conn.terminate()

    async def run(self) -> None:
        """Listen forever, reconnecting after failures, until cancelled."""
        while True:
            try:
                await self._listen_once()
                reason = "connection closed"
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                reason = str(exc) or type(exc).__name__
            if not self._failing:
                log.warning("key-change listener lost (%s); cached keys stay valid until their TTL", reason)
            self._failing = True
            await asyncio.sleep(self.retry_seconds)

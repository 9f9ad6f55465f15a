"""The writer loop: read complete lines after the committed position, aggregate, commit, repeat.

Postgres down → the loop retries with backoff from the committed position (the lines wait in
Envoy's file); nothing on the request path waits for it. Killed at any point → the next start
reads from the committed position again: every line is counted exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from usage_service import metrics
from usage_service.aggregate import Batch, aggregate
from usage_service.charge import TokenCharger
from usage_service.store import PositionMoved, UsageStore
from usage_service.tail import Chunk, LogTail, Position

log = logging.getLogger("usage_service.writer")
RETRIED = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, PositionMoved)


@dataclass
class WriterState:
    """What /health and /ready report."""

    connected: bool = False
    position: Position | None = None
    last_commit: float = 0.0
    last_error: str = ""


class Writer:
    def __init__(
        self,
        dsn: str,
        tail: LogTail,
        source: str,
        interval_s: float = 0.5,
        hourly_retention: timedelta = timedelta(days=90),
        prune_every_s: float = 600.0,
        charger: TokenCharger | None = None,
    ) -> None:
        self.dsn, self.tail, self.source = dsn, tail, source
        self.interval_s = interval_s
        self.hourly_retention, self.prune_every_s = hourly_retention, prune_every_s
        self.store: UsageStore | None = None
        self.state = WriterState()
        self._next_prune = 0.0
        self.charger = charger  # GATEWAY_TOKEN_CHARGE=usage: charge each batch's tokens to the limits

    def _read(self, position: Position) -> tuple[Chunk, Batch] | None:
        chunk = self.tail.next_chunk(position)
        return None if chunk is None else (chunk, aggregate(chunk.lines))

    async def step(self) -> bool:
        """Commit the next chunk, if any. True when the position moved."""
        assert self.store is not None
        if self.state.position is None:
            self.state.position = await self.store.position(self.source)
        got = await asyncio.to_thread(self._read, self.state.position)
        if got is None:
            self._lag()
            return False
        chunk, batch = got
        await self.store.commit(self.source, chunk.start, chunk.end, batch)
        self.state.position = chunk.end
        if self.charger is not None and batch.token_charges:
            # After the commit: a batch read again after a crash must not be charged twice.
            await self.charger.charge(batch.token_charges)
        self.state.last_commit = time.time()
        metrics.COMMITS.inc()
        metrics.LAST_COMMIT.set(self.state.last_commit)
        metrics.LINES.labels("counted").inc(batch.records)
        metrics.LINES.labels("skipped").inc(batch.bad_lines)
        if batch.bad_lines:
            log.warning("%d line(s) at %s were not usage records (skipped)", batch.bad_lines, chunk.start)
        if chunk.note:
            log.info("usage log: %s; now at %s", chunk.note, chunk.end)
        self._lag()
        return True

    def _lag(self) -> None:
        position = self.state.position
        try:
            stat = os.stat(self.tail.path)
        except OSError:
            return
        same = position is not None and position.identity == f"{stat.st_dev}:{stat.st_ino}"
        metrics.LAG_BYTES.set(max(0, stat.st_size - position.offset) if same and position else stat.st_size)

    async def _prune(self) -> None:
        assert self.store is not None
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.prune_every_s
        deleted = await self.store.prune_hourly(datetime.now(UTC) - self.hourly_retention)
        metrics.PRUNED.inc(deleted)
        if deleted:
            log.info("retention: deleted %d hourly row(s)", deleted)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.2
        while not stop.is_set():
            try:
                if self.store is None:
                    self.store = await UsageStore.connect(self.dsn)
                    log.info("connected to Postgres; reading %s", self.tail.path)
                self.state.connected = True
                moved = await self.step()
                await self._prune()
                delay, self.state.last_error = 0.2, ""
                if moved:
                    continue  # catch up without waiting
            except RETRIED as exc:
                self.state.connected = isinstance(exc, PositionMoved)
                if str(exc) != self.state.last_error:
                    log.warning(
                        "store: %s: %s (retrying; the lines wait in the log)", type(exc).__name__, exc
                    )
                self.state.last_error = str(exc)
                self.state.position = None  # the commit may or may not have happened: ask Postgres
                metrics.STORE_ERRORS.inc()
                if isinstance(exc, PositionMoved):
                    metrics.POSITION_MOVED.inc()
                if self.store is not None:
                    await self.store.expire_connections()
                await _sleep(stop, delay)
                delay = min(delay * 2, 5.0)
                continue
            await _sleep(stop, self.interval_s)
        if self.store is not None:
            await self.store.close()
        if self.charger is not None:
            await self.charger.close()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

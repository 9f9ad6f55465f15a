"""Postgres (asyncpg) for the writer: the counts and the log position change in ONE transaction.

That transaction is what makes the records exact: a crash before COMMIT leaves both the counts
and the position as they were (the lines are read again), a crash after leaves both advanced
(the lines are never read again). The position update is a compare-and-set on the position the
lines were read from, so a second writer on the same log cannot count a line twice.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from usage_service.aggregate import Batch, Counts
from usage_service.schema import migrate
from usage_service.tail import Position

_UPSERT = """
INSERT INTO {table} AS t (key_id, route, {bucket}, requests, tokens, client_errors, server_errors,
                          rate_limited)
SELECT * FROM unnest($1::text[], $2::text[], $3::{bucket_type}[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::bigint[], $8::bigint[])
ON CONFLICT (key_id, {bucket}, route) DO UPDATE SET
    requests = t.requests + EXCLUDED.requests, tokens = t.tokens + EXCLUDED.tokens,
    client_errors = t.client_errors + EXCLUDED.client_errors,
    server_errors = t.server_errors + EXCLUDED.server_errors,
    rate_limited = t.rate_limited + EXCLUDED.rate_limited
"""
UPSERT_HOURLY = _UPSERT.format(table="usage_hourly", bucket="hour", bucket_type="timestamptz")
UPSERT_DAILY = _UPSERT.format(table="usage_daily", bucket="day", bucket_type="date")
MOVE = """
UPDATE usage_log_position SET identity = $2, byte_offset = $3, updated_at = now()
WHERE source = $1 AND identity = $4 AND byte_offset = $5
"""


class PositionMoved(RuntimeError):
    """The committed position is not the one these lines were read from (another writer)."""


def columns(rows: dict[tuple[str, str, object], Counts]) -> list[list[object]]:
    """unnest() arguments, rows sorted by primary key (concurrent writers lock in one order)."""
    ordered = sorted(rows.items(), key=lambda item: (item[0][0], item[0][2], item[0][1]))
    return [
        [k[0] for k, _ in ordered],
        [k[1] for k, _ in ordered],
        [k[2] for k, _ in ordered],
        *([c.as_tuple()[i] for _, c in ordered] for i in range(5)),
    ]


class UsageStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, max_size: int = 4) -> UsageStore:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, timeout=5, command_timeout=30)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def position(self, source: str) -> Position:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO usage_log_position (source, identity, byte_offset) VALUES ($1, '', 0)"
                " ON CONFLICT (source) DO NOTHING",
                source,
            )
            row = await conn.fetchrow(
                "SELECT identity, byte_offset FROM usage_log_position WHERE source = $1", source
            )
        return Position(row["identity"], row["byte_offset"])

    async def commit(self, source: str, start: Position, end: Position, batch: Batch) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            moved = await conn.execute(MOVE, source, end.identity, end.offset, start.identity, start.offset)
            if moved != "UPDATE 1":
                raise PositionMoved(f"{source}: the committed position is no longer {start}")
            if batch.hourly:
                await conn.execute(UPSERT_HOURLY, *columns(batch.hourly))  # type: ignore[arg-type]
                await conn.execute(UPSERT_DAILY, *columns(batch.daily()))  # type: ignore[arg-type]

    async def prune_hourly(self, before: datetime) -> int:
        """Delete hourly rows older than `before` (the daily rows stay). Returns rows deleted."""
        result = await self.pool.execute("DELETE FROM usage_hourly WHERE hour < $1", before)
        return int(result.split()[-1])

    async def expire_connections(self) -> None:
        """After a connection error: reconnect every pooled connection on its next use."""
        await self.pool.expire_connections()

    async def close(self) -> None:
        await self.pool.close()

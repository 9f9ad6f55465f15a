"""Reading the usage tables: the one part other packages may import (the key API's /auth/profile
and the key CLI use it). Takes any asyncpg connection or pool."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg

from usage_service.aggregate import COUNTERS
from usage_service.params import STEP, Export, Range

SUMS = ", ".join(f"sum({c})::bigint AS {c}" for c in COUNTERS)
TABLE = {"hour": ("usage_hourly", "hour"), "day": ("usage_daily", "day")}


def _at(bucket: datetime | date) -> datetime:
    """A row's bucket (timestamptz or date) as an aware UTC datetime."""
    if isinstance(bucket, datetime):
        return bucket.astimezone(UTC)
    return datetime.combine(bucket, time.min, tzinfo=UTC)


def _bounds(span: Range) -> tuple[Any, Any]:
    if span.granularity == "day":
        return span.start.date(), span.end.date()
    return span.start, span.end


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


async def history(db: asyncpg.Pool | asyncpg.Connection, key_id: str, span: Range) -> list[dict[str, Any]]:
    """One entry per bucket of the range (zeros where the key made no request), oldest first."""
    table, bucket = TABLE[span.granularity]
    rows = await db.fetch(
        f"SELECT {bucket} AS bucket, {SUMS} FROM {table} WHERE key_id = $1 AND {bucket} >= $2"
        f" AND {bucket} < $3 GROUP BY {bucket}",
        key_id,
        *_bounds(span),
    )
    found = {_at(r["bucket"]): r for r in rows}
    step, data = STEP[span.granularity], []
    for start in span.buckets():
        row = found.get(start)
        counts = {c: (row[c] if row else 0) for c in COUNTERS}
        data.append({"start": iso(start), "end": iso(start + step), **counts})
    return data


async def export(
    db: asyncpg.Pool | asyncpg.Connection, query: Export, limit: int = 1_000_000
) -> list[dict[str, Any]]:
    """Rows per key, route and bucket with any traffic (the billing export), ordered; at most
    `limit` + 1 rows (one more than the caller allows tells it the answer was cut)."""
    span = query.range
    table, bucket = TABLE[span.granularity]
    where, args = f"{bucket} >= $1 AND {bucket} < $2", list(_bounds(span))
    if query.key_id is not None:
        where += " AND key_id = $3"
        args.append(query.key_id)
    rows = await db.fetch(
        f"SELECT key_id, route, {bucket} AS bucket, {', '.join(COUNTERS)} FROM {table} WHERE {where}"
        f" ORDER BY key_id, {bucket}, route LIMIT {int(limit) + 1}",
        *args,
    )
    step = STEP[span.granularity]
    return [
        {"key_id": r["key_id"], "route": r["route"], "start": iso(_at(r["bucket"])),
         "end": iso(_at(r["bucket"]) + step), **{c: r[c] for c in COUNTERS}}
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class MonthToDate:
    since: datetime
    requests: int
    tokens: int


async def month_to_date(db: asyncpg.Pool | asyncpg.Connection, key_id: str, now: datetime) -> MonthToDate:
    """Requests and tokens of the key since the first of the (UTC) month; zeros when the usage
    tables do not exist yet (the usage service never ran)."""
    first = now.astimezone(UTC).date().replace(day=1)
    try:
        row = await db.fetchrow(
            "SELECT coalesce(sum(requests), 0)::bigint AS requests,"
            " coalesce(sum(tokens), 0)::bigint AS tokens FROM usage_daily WHERE key_id = $1 AND day >= $2",
            key_id,
            first,
        )
    except asyncpg.UndefinedTableError:
        return MonthToDate(_at(first), 0, 0)
    assert row is not None
    return MonthToDate(_at(first), row["requests"], row["tokens"])


async def hourly_since(db: asyncpg.Pool | asyncpg.Connection, key_id: str, since: timedelta,
                       now: datetime) -> list[dict[str, Any]]:  # fmt: skip
    """The key's hourly history over the last `since` (for the key CLI's table and plot)."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + STEP["hour"]
    start = end - max(since, STEP["hour"])
    start = start.replace(minute=0, second=0, microsecond=0)
    return await history(db, key_id, Range("hour", start, end))

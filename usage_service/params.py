"""Query parameters of /v1/usage/history and /admin/usage → a checked range (pure: no I/O).

Every problem is a ParamError naming the parameter (the HTTP layer turns it into a 422).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
# Ranges are capped: at most 744 hourly or 366 daily buckets per request.
MAX_SPAN = {"hour": timedelta(days=31), "day": timedelta(days=366)}
DEFAULT_SPAN = {"hour": timedelta(hours=24), "day": timedelta(days=30)}
FORMATS = ("json", "csv")
MAX_RAW = 64
MIN_YEAR, MAX_YEAR = 2000, 9000  # far from datetime's limits: bucket arithmetic never overflows


class ParamError(ValueError):
    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}: {detail}")
        self.param, self.detail = param, detail


@dataclass(frozen=True)
class Range:
    granularity: str
    start: datetime  # inclusive, on a bucket boundary (UTC)
    end: datetime  # exclusive, on a bucket boundary

    def buckets(self) -> list[datetime]:
        step, at, out = STEP[self.granularity], self.start, []
        while at < self.end:
            out.append(at)
            at += step
        return out


@dataclass(frozen=True)
class Export:
    range: Range
    format: str
    key_id: str | None


def single(items: Iterable[tuple[str, str]], allowed: set[str]) -> dict[str, str]:
    """One value per parameter; unknown or repeated parameters are refused by name."""
    found: dict[str, str] = {}
    for name, value in items:
        if name not in allowed:
            shown = name if len(name) <= MAX_RAW and name.isprintable() else f"{name[:MAX_RAW]!r}…"
            raise ParamError(shown, f"unknown parameter; expected {', '.join(sorted(allowed))}")
        if name in found:
            raise ParamError(name, "given more than once")
        found[name] = value
    return found


def floor(when: datetime, granularity: str) -> datetime:
    when = when.replace(minute=0, second=0, microsecond=0)
    return when.replace(hour=0) if granularity == "day" else when


def ceil(when: datetime, granularity: str) -> datetime:
    down = floor(when, granularity)
    return down if down == when else down + STEP[granularity]


def parse_time(param: str, raw: str) -> datetime:
    """ISO 8601 date (UTC midnight) or date-time (no offset = UTC; Z or ±hh:mm accepted)."""
    if not raw or len(raw) > MAX_RAW or not raw.isascii():
        raise ParamError(
            param, "expected an ISO 8601 date or date-time, e.g. 2026-12-01 or 2026-12-01T13:00:00Z"
        )
    try:
        when = (
            datetime.fromisoformat(raw)
            if len(raw) > 10
            else datetime.combine(date.fromisoformat(raw), datetime.min.time())
        )
    except ValueError:
        raise ParamError(param, f"not an ISO 8601 date or date-time: {raw!r}") from None
    if not MIN_YEAR <= when.year <= MAX_YEAR:
        raise ParamError(param, f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_range(values: dict[str, str], now: datetime, default_granularity: str = "hour") -> Range:
    granularity = values.get("granularity", default_granularity)
    if granularity not in STEP:
        raise ParamError("granularity", f"must be one of {', '.join(STEP)}, got {granularity[:MAX_RAW]!r}")
    end = ceil(parse_time("end", values["end"]) if "end" in values else now, granularity)
    if "start" in values:
        start = floor(parse_time("start", values["start"]), granularity)
    else:
        start = end - DEFAULT_SPAN[granularity]
    if start >= end:
        raise ParamError("start", "must be before end")
    if end - start > MAX_SPAN[granularity]:
        days = MAX_SPAN[granularity].days
        raise ParamError("end", f"the range is capped at {days} days for granularity={granularity}")
    return Range(granularity, start, end)


def parse_history(items: Iterable[tuple[str, str]], now: datetime) -> Range:
    return parse_range(single(items, {"granularity", "start", "end"}), now)


def parse_key_id(raw: str) -> str:
    if not raw or len(raw) > 128 or not raw.isascii() or not raw.isprintable() or " " in raw:
        raise ParamError("key_id", "expected a key id (up to 128 printable ASCII characters)")
    return raw


def parse_export(items: Iterable[tuple[str, str]], now: datetime) -> Export:
    values = single(items, {"granularity", "start", "end", "format", "key_id"})
    chosen = values.get("format", "json")
    if chosen not in FORMATS:
        raise ParamError("format", f"must be json or csv, got {chosen[:MAX_RAW]!r}")
    key_id = parse_key_id(values["key_id"]) if "key_id" in values else None
    return Export(parse_range(values, now, default_granularity="day"), chosen, key_id)

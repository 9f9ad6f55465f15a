"""Sum Records per (key_id, route, hour) and per (key_id, route, day) (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from usage_service.records import BadLine, Record, parse_line

COUNTERS = ("requests", "tokens", "client_errors", "server_errors", "rate_limited")


@dataclass
class Counts:
    requests: int = 0
    tokens: int = 0
    client_errors: int = 0
    server_errors: int = 0
    rate_limited: int = 0

    def add(self, record: Record) -> None:
        self.requests += 1
        self.tokens += record.tokens
        self.client_errors += record.client_error
        self.server_errors += record.server_error
        self.rate_limited += record.rate_limited

    def merge(self, other: Counts) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in COUNTERS)


@dataclass
class Batch:
    """What one transaction adds: hourly counts, and how many lines were not records."""

    hourly: dict[tuple[str, str, datetime], Counts] = field(default_factory=dict)
    records: int = 0
    bad_lines: int = 0
    # GATEWAY_TOKEN_CHARGE=usage: per key with token limits, (tokens to charge, its limits).
    token_charges: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        key = (record.key_id, record.route, record.hour)
        counts = self.hourly.get(key)
        if counts is None:
            counts = self.hourly[key] = Counts()
        counts.add(record)
        self.records += 1
        if record.tokens and record.token_limits:
            tokens, _ = self.token_charges.get(record.key_id, (0, ""))
            self.token_charges[record.key_id] = (tokens + record.tokens, record.token_limits)

    def daily(self) -> dict[tuple[str, str, date], Counts]:
        """The same counts per UTC day (the hour rows roll up into these in the same transaction)."""
        days: dict[tuple[str, str, date], Counts] = {}
        for (key_id, route, hour), counts in self.hourly.items():
            days.setdefault((key_id, route, hour.date()), Counts()).merge(counts)
        return days


def aggregate(lines: Iterable[bytes]) -> Batch:
    batch = Batch()
    for line in lines:
        if not line.strip():
            continue
        try:
            batch.add(parse_line(line))
        except BadLine:
            batch.bad_lines += 1
    return batch

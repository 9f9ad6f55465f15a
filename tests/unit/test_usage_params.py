"""Usage records, the pure parts: query parameters of /v1/usage/history and /admin/usage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from usage_service.params import ParamError, parse_export, parse_history

NOW = datetime(2026, 12, 7, 13, 25, tzinfo=UTC)


def items(**params: str) -> list[tuple[str, str]]:
    return list(params.items())


def test_history_defaults_to_the_last_24_hours() -> None:
    span = parse_history([], NOW)
    assert span.granularity == "hour"
    assert span.end == datetime(2026, 12, 7, 14, tzinfo=UTC)  # the current hour is included
    assert len(span.buckets()) == 24


def test_day_granularity_aligns_to_utc_days() -> None:
    span = parse_history(items(granularity="day", start="2026-11-01", end="2026-12-01T00:00:01Z"), NOW)
    assert span.start == datetime(2026, 11, 1, tzinfo=UTC) and span.end == datetime(2026, 12, 2, tzinfo=UTC)
    assert len(span.buckets()) == 31


def test_offsets_are_converted_to_utc() -> None:
    span = parse_history(items(start="2026-12-07T10:30:00+02:00", end="2026-12-07T12:00:00+02:00"), NOW)
    assert span.start == datetime(2026, 12, 7, 8, tzinfo=UTC) and span.end == datetime(
        2026, 12, 7, 10, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("params", "param"),
    [
        (items(granularity="week"), "granularity"),
        (items(start="soon"), "start"),
        (items(start="2026-13-01"), "start"),
        (items(start="x" * 100), "start"),
        (items(start="２０２６-01-01"), "start"),
        (items(start="1999-12-31"), "start"),
        (items(end="9999-12-31"), "end"),
        (items(start="2026-12-07", end="2026-12-07"), "start"),
        (items(start="2026-10-01", end="2026-12-01"), "end"),  # 61 days of hours: capped at 31
        (items(granularity="day", start="2024-01-01", end="2026-01-01"), "end"),
        ([("start", "2026-12-01"), ("start", "2026-12-02")], "start"),
        (items(bogus="1"), "bogus"),
        (items(format="csv"), "format"),  # an export parameter, not a history one
    ],
)
def test_history_errors_name_the_parameter(params: list[tuple[str, str]], param: str) -> None:
    with pytest.raises(ParamError) as caught:
        parse_history(params, NOW)
    assert caught.value.param == param and str(caught.value).startswith(f"{param}: ")


def test_export_defaults_and_options() -> None:
    query = parse_export([], NOW)
    assert (query.range.granularity, query.format, query.key_id) == ("day", "json", None)
    assert len(query.range.buckets()) == 30
    query = parse_export(items(format="csv", key_id="key_123", granularity="hour"), NOW)
    assert (query.range.granularity, query.format, query.key_id) == ("hour", "csv", "key_123")


@pytest.mark.parametrize(
    ("params", "param"),
    [(items(format="xml"), "format"), (items(key_id=""), "key_id"), (items(key_id="a b"), "key_id"),
     (items(key_id="k" * 129), "key_id"), (items(key_id="ключ"), "key_id")],
)  # fmt: skip
def test_export_errors_name_the_parameter(params: list[tuple[str, str]], param: str) -> None:
    with pytest.raises(ParamError) as caught:
        parse_export(params, NOW)
    assert caught.value.param == param

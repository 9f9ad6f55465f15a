"""Usage records, the pure parts: log line parsing, aggregation, reading the log from a position."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from usage_service.aggregate import Counts, aggregate
from usage_service.records import BadLine, parse_line, route_group
from usage_service.tail import LogTail, Position, complete_lines, identity

HOUR = datetime(2026, 12, 7, 13, tzinfo=UTC)


def line(**fields: object) -> bytes:
    base = {"time": "2026-12-07T13:59:59.999Z", "key_id": "k1", "path": "/v1/embed", "status": 200,
            "tokens": "12", "flags": "-"}  # fmt: skip
    return json.dumps({**base, **fields}).encode()


def test_a_line_as_envoy_writes_it() -> None:
    record = parse_line(line())
    assert (record.hour, record.key_id, record.route, record.status, record.tokens) == (
        HOUR,
        "k1",
        "embed",
        200,
        12,
    )
    assert not (record.client_error or record.server_error or record.rate_limited)


@pytest.mark.parametrize(
    ("fields", "client", "server", "limited"),
    [
        ({"status": 422}, 1, 0, 0),
        ({"status": 401}, 1, 0, 0),
        ({"status": 429}, 0, 0, 1),  # from the adapter or the ratelimit service
        ({"status": 429, "flags": "RL"}, 0, 0, 1),  # Envoy's ratelimit filter
        ({"status": 503, "flags": "UH,RL"}, 0, 1, 1),
        ({"status": 500}, 0, 1, 0),
        ({"status": 0, "flags": "DC"}, 0, 0, 0),  # client went away before an answer
    ],
)
def test_classes(fields: dict, client: int, server: int, limited: int) -> None:
    record = parse_line(line(**fields))
    assert (record.client_error, record.server_error, record.rate_limited) == (client, server, limited)


@pytest.mark.parametrize(
    ("tokens", "counted"),
    [(None, 0), ("-", 0), ("", 0), ("7", 7), (7, 7), ("-3", 0), ("1e9", 0), ("99999999999999", 0), (True, 0)],
)
def test_tokens_absent_or_garbage_count_zero(tokens: object, counted: int) -> None:
    assert parse_line(line(tokens=tokens)).tokens == counted


@pytest.mark.parametrize(
    ("path", "group"),
    [("/v1/embed", "embed"), ("/v1/embeddings?x=1", "embeddings"), ("/v1/detect/batch", "detect"),
     ("/v1/usage/history", "usage"), ("/v1/%65mbed", "embed"), ("/v1/nope", "other"),
     ("/auth/profile", "auth"), ("/", "other"), ("", "other")],
)  # fmt: skip
def test_route_groups_are_a_fixed_set(path: str, group: str) -> None:
    assert route_group(path) == group


def test_times_with_offsets_land_in_the_utc_hour() -> None:
    assert parse_line(line(time="2026-12-07T14:30:00+01:00")).hour == HOUR
    assert parse_line(line(time="2026-12-07T13:05:00")).hour == HOUR


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1]", line(key_id=None), line(key_id="-"), line(key_id=""), line(key_id="k" * 200),
     line(status="x"), line(status=None), line(time="yesterday"), line(time=None), b"\xff\xfe"],
)  # fmt: skip
def test_bad_lines(raw: bytes) -> None:
    with pytest.raises(BadLine):
        parse_line(raw)


def test_aggregate_per_key_route_hour_and_day() -> None:
    lines = [line(), line(status=422), line(status=429, flags="RL"), line(path="/v1/detect"), b"", b"junk",
             line(key_id="k2", time="2026-12-07T14:00:00Z", tokens="3")]  # fmt: skip
    batch = aggregate(lines)
    assert (batch.records, batch.bad_lines) == (5, 1)
    assert batch.hourly[("k1", "embed", HOUR)] == Counts(3, 36, 1, 0, 1)
    assert batch.hourly[("k1", "detect", HOUR)] == Counts(1, 12, 0, 0, 0)
    daily = batch.daily()
    assert daily[("k2", "embed", date(2026, 12, 7))] == Counts(1, 3, 0, 0, 0)
    assert sum(c.requests for c in daily.values()) == 5


def test_complete_lines_leave_the_partial_rest() -> None:
    assert complete_lines(b"a\nb\nc") == ([b"a", b"b"], 4)
    assert complete_lines(b"abc") == ([], 0)
    assert complete_lines(b"a\n") == ([b"a"], 2)


def test_tail_resumes_from_a_position_and_waits_for_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    log.write_bytes(b"one\ntwo\nthr")
    tail = LogTail(log)
    first = tail.next_chunk(Position("", 0))
    assert first is not None and first.lines == [] and first.end == Position(identity(log.stat()), 0)
    chunk = tail.next_chunk(first.end)
    assert chunk is not None and chunk.lines == [b"one", b"two"] and chunk.end.offset == 8
    assert tail.next_chunk(chunk.end) is None  # "thr" is not complete yet
    with log.open("ab") as file:
        file.write(b"ee\n")
    rest = tail.next_chunk(chunk.end)
    assert rest is not None and rest.lines == [b"three"] and rest.end.offset == 14


def test_tail_finishes_a_rotated_file_then_moves_on(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    log.write_bytes(b"a\nb\n")
    tail = LogTail(log, settle_s=0.5)
    at = Position(identity(log.stat()), 2)  # "a" committed
    log.rename(tmp_path / "usage.jsonl.1")
    with (tmp_path / "usage.jsonl.1").open("ab") as file:
        file.write(b"c\n")  # Envoy still writes into the renamed file until it reopens
    log.write_bytes(b"new\n")
    chunk = tail.next_chunk(at)
    assert chunk is not None and chunk.lines == [b"b", b"c"]
    assert tail.next_chunk(chunk.end) is None  # the old file has not been quiet long enough
    old = tmp_path / "usage.jsonl.1"
    past = time.time() - 10
    os.utime(old, (past, past))
    moved = tail.next_chunk(chunk.end)
    assert moved is not None and moved.lines == [] and moved.end == Position(identity(log.stat()), 0)
    assert tail.next_chunk(moved.end).lines == [b"new"]  # type: ignore[union-attr]


def test_tail_after_truncation_or_deletion(tmp_path: Path) -> None:
    log = tmp_path / "usage.jsonl"
    log.write_bytes(b"a\nb\n")
    tail = LogTail(log)
    at = Position(identity(log.stat()), 4)
    log.write_bytes(b"")  # copytruncate
    truncated = tail.next_chunk(at)
    assert truncated is not None and truncated.end == Position(at.identity, 0) and truncated.note
    gone = Position("0:0", 10)
    moved = tail.next_chunk(gone)
    assert moved is not None and moved.end == Position(identity(log.stat()), 0)
    log.unlink()
    assert tail.next_chunk(Position("", 0)) is None


def test_token_charges_are_summed_per_key_with_its_limits() -> None:
    batch = aggregate([
        line(key_id="key_a", tokens=5, token_limits="minute=50"),
        line(key_id="key_a", tokens=7, token_limits="minute=50"),
        line(key_id="key_b", tokens=9),  # no token limits: nothing to charge
        line(key_id="key_c", tokens=0, token_limits="day=10"),  # no tokens: nothing to charge
    ])  # fmt: skip
    assert batch.token_charges == {"key_a": (12, "minute=50")}
    assert sum(c.tokens for c in batch.hourly.values()) == 21  # the records count every token
    assert parse_line(line(token_limits="x" * 500)).token_limits == ""  # not what ext_authz writes

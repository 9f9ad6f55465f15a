"""Usage records through a real Envoy, authz and ratelimit sidecars, Postgres and the writer
process: the stored counts equal Envoy's own counters exactly, under 32 concurrent clients, with
the writer SIGKILLed mid-load, and with Postgres stopped and started while traffic flows."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.authz_fixtures import create_key
from tests.procs import free_port
from tests.usage_fixtures import ADMIN_TOKEN, COUNTS, Load, UsageStack, envoy_counts, wait_for

FIGURES = Path(__file__).resolve().parents[2] / ".run" / "usage"


def body_for(keys: list[str]):  # type: ignore[no-untyped-def]
    """Mostly 200s with 1-50 tokens, every 10th a 422, every 37th a 500 (the upstream obeys)."""

    def body(i: int) -> tuple[str, dict]:
        status = 500 if i % 37 == 36 else 422 if i % 10 == 9 else 200
        return keys[i % len(keys)], {"status": status, "tokens": i % 50 + 1}

    return body


def new_keys(database_url: str, n: int, **fields: object) -> tuple[list[str], list[str]]:
    made = [create_key(database_url, **fields) for _ in range(n)]
    return [plaintext for plaintext, _ in made], [record.id for _, record in made]


def expected(stack: UsageStack, before: dict[str, int], tokens_before: int) -> dict[str, int]:
    """What the records must say, from Envoy's counters (and the tokens the upstream reported)."""
    after = envoy_counts(stack.envoy)
    d = {k: after[k] - before[k] for k in after}
    assert d["completed"] == d["2xx"] + d["4xx"] + d["5xx"] == d["authz_ok"], d
    return {
        "requests": d["completed"], "tokens": stack.upstream.tokens_reported - tokens_before,
        "client_errors": d["4xx"] - d["over_limit"], "server_errors": d["5xx"],
        "rate_limited": d["over_limit"],
    }  # fmt: skip


def settled(stack: UsageStack, ids: list[str], want: dict[str, int], timeout: float = 60) -> float:
    """Seconds until the records reach `want`; then they must stay exactly there (nothing twice)."""
    took = wait_for(lambda: stack.postgres.totals(ids)["requests"] >= want["requests"], timeout, 0.05)
    time.sleep(1.5)  # a line counted twice would show up by now
    assert stack.postgres.totals(ids) == want
    assert stack.postgres.totals(ids, "usage_daily") == want
    return took


def record(name: str, figures: dict) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(name, figures)


def test_counts_equal_envoy_under_32_clients(usage_stack: UsageStack, database_url: str) -> None:
    keys, ids = new_keys(database_url, 4)
    limited, limited_ids = new_keys(database_url, 1, rate_limit_minute=40)
    before, tokens = envoy_counts(usage_stack.envoy), usage_stack.upstream.tokens_reported
    plain = body_for(keys)
    load = Load(usage_stack.envoy.url, lambda i: plain(i) if i % 8 else (limited[0], plain(i)[1]), 1600)
    cpu_before = usage_stack.writer_cpu_s()
    tally = load.start().join()
    want = expected(usage_stack, before, tokens)
    assert want["requests"] == 1600 and "transport" not in tally, tally
    assert want["rate_limited"] > 0 and want["client_errors"] > 0 and want["server_errors"] > 0, want
    took = settled(usage_stack, ids + limited_ids, want)
    cpu_us = (usage_stack.writer_cpu_s() - cpu_before) * 1e6 / 1600  # incl. 1.5 s of idle polling
    figures = {"sent": 1600, "statuses": tally, "stored": want, "caught_up_s": round(took, 2)}
    record("exact_32_clients", {**figures, "writer_cpu_us_per_request": round(cpu_us)})


def test_writer_sigkill_mid_load(usage_stack: UsageStack, database_url: str) -> None:
    keys, ids = new_keys(database_url, 4)
    before, tokens = envoy_counts(usage_stack.envoy), usage_stack.upstream.tokens_reported
    load = Load(usage_stack.envoy.url, body_for(keys)).start()
    kills = []
    for _ in range(3):
        time.sleep(1.0)
        usage_stack.kill_writer()
        at = load.sent()
        time.sleep(0.3)
        kills.append({"killed_after_requests": at, "restart_s": round(usage_stack.start_writer(), 2)})
    time.sleep(1.0)
    tally = load.stop()
    want = expected(usage_stack, before, tokens)
    assert "transport" not in tally, tally
    took = settled(usage_stack, ids, want)
    record(
        "writer_sigkill",
        {"sent": want["requests"], "kills": kills, "stored": want, "caught_up_s": round(took, 2)},
    )


def test_postgres_down_while_traffic_flows(usage_stack: UsageStack, database_url: str) -> None:
    keys, ids = new_keys(database_url, 4)
    before, tokens = envoy_counts(usage_stack.envoy), usage_stack.upstream.tokens_reported
    load = Load(usage_stack.envoy.url, body_for(keys)).start()
    time.sleep(1.0)
    usage_stack.postgres.stop()
    down_at = load.sent()
    time.sleep(4.0)  # traffic keeps flowing; the lines wait in Envoy's file
    during = load.sent() - down_at
    usage_stack.postgres.start()
    back = time.monotonic()
    tally = load.stop()
    # The request path never noticed: only the statuses the upstream was asked for (no 503s).
    assert set(tally) <= {200, 422, 500}, tally
    want = expected(usage_stack, before, tokens)
    took = (time.monotonic() - back) + settled(usage_stack, ids, want)
    record("postgres_down", {
        "sent": want["requests"], "sent_while_down": during, "statuses": tally, "stored": want,
        "all_stored_after_postgres_back_s": round(took, 2),
    })  # fmt: skip


def get(stack: UsageStack, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(f"{stack.envoy.url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]


def test_history_and_export(usage_stack: UsageStack, database_url: str) -> None:
    keys, ids = new_keys(database_url, 1)
    bodies = [{"status": 200, "tokens": 5}] * 7 + [{"status": 422}] * 2 + [{"status": 500}]
    Load(usage_stack.envoy.url, lambda i: (keys[0], bodies[i]), len(bodies), clients=4).start().join()
    wait_for(lambda: usage_stack.postgres.totals(ids)["requests"] == 10)
    auth = {"Authorization": f"Bearer {keys[0]}"}
    answer = get(usage_stack, "/v1/usage/history", params={"granularity": "hour"}, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["granularity"] == "hour" and len(body["data"]) == 24
    now = body["data"][-1]
    assert {k: now[k] for k in COUNTS} == {
        "requests": 10,
        "tokens": 35,
        "client_errors": 2,
        "server_errors": 1,
        "rate_limited": 0,
    }
    assert sum(b["requests"] for b in body["data"]) == 10
    # The history call itself is a request of the key (route "usage"): 11 once it is recorded.
    wait_for(lambda: usage_stack.postgres.totals(ids)["requests"] == 11)
    days = get(usage_stack, "/v1/usage/history", params={"granularity": "day"}, headers=auth).json()
    assert len(days["data"]) == 30 and days["data"][-1]["requests"] == 11

    today = datetime.now(UTC).date()
    window = {
        "start": (today - timedelta(days=1)).isoformat(),
        "end": (today + timedelta(days=1)).isoformat(),
    }
    admin = {"X-Admin-Token": ADMIN_TOKEN}
    as_json = get(usage_stack, "/admin/usage", params=window, headers=admin).json()
    as_csv = get(usage_stack, "/admin/usage", params={**window, "format": "csv"}, headers=admin)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == len(as_json["rows"]) > 0
    for name in COUNTS:
        assert (
            sum(int(r[name]) for r in rows)
            == as_json["totals"][name]
            == sum(r[name] for r in as_json["rows"])
        )
    mine = get(usage_stack, "/admin/usage", params={**window, "key_id": ids[0]}, headers=admin).json()
    assert {r["route"] for r in mine["rows"]} == {"embed", "usage"}
    assert mine["totals"]["requests"] == 11 and mine["totals"]["tokens"] == 35
    refused = get(usage_stack, "/admin/usage", params=window, headers={"X-Admin-Token": "wrong"})
    assert refused.status_code == 401 and refused.json()["code"] == "AUTHENTICATION_ERROR"


def test_only_requests_ext_authz_granted_are_logged(usage_stack: UsageStack, database_url: str) -> None:
    keys, ids = new_keys(database_url, 1)
    log = usage_stack.log_path

    def lines() -> list[str]:
        return log.read_text().splitlines()

    time.sleep(1.5)  # earlier tests' lines flushed
    start = len(lines())
    spoof = {"x-gateway-key-id": ids[0]}
    assert get(usage_stack, "/health", headers=spoof).status_code == 200  # ext_authz off on /health
    assert (
        get(usage_stack, "/admin/usage", headers={**spoof, "X-Admin-Token": ADMIN_TOKEN}).status_code == 200
    )
    bad = httpx.post(
        f"{usage_stack.envoy.url}/v1/embed", json={}, headers={"Authorization": "Bearer sk_test_x"}
    )
    assert bad.status_code == 401
    time.sleep(1.5)
    assert len(lines()) == start
    ok = httpx.post(f"{usage_stack.envoy.url}/v1/embed", json={"tokens": 3}, headers={"X-API-Key": keys[0]})
    assert ok.status_code == 200
    wait_for(lambda: len(lines()) == start + 1, 10)
    entry = json.loads(lines()[-1])
    assert entry["key_id"] == ids[0] and entry["status"] == 200 and str(entry["tokens"]) == "3"


HOSTILE = [
    ("granularity", {"granularity": "minute"}),
    ("granularity", {"granularity": "hour\x00"}),
    ("start", {"start": "yesterday"}),
    ("start", {"start": "2026-02-30"}),
    ("start", {"start": "9999-12-31T23:59:59"}),
    ("start", {"start": "0001-01-01"}),
    ("start", {"start": "2026-12-01T25:00:00"}),
    ("start", {"start": "x" * 5000}),
    ("start", {"start": "２０２６-01-01"}),
    ("start", {"start": "2026-12-02", "end": "2026-12-01"}),
    ("end", {"start": "2020-01-01", "end": "2026-01-01"}),
    ("end", {"granularity": "hour", "start": "2026-01-01", "end": "2026-03-01"}),
    ("end", {"end": "1e308"}),
    ("bogus", {"bogus": "1"}),
]


@pytest.mark.parametrize(("param", "params"), HOSTILE, ids=[f"{p}-{i}" for i, (p, _) in enumerate(HOSTILE)])
def test_hostile_parameters_are_422_json(usage_stack: UsageStack, database_url: str, param: str,
                                         params: dict[str, str]) -> None:  # fmt: skip
    keys, _ = new_keys(database_url, 1)
    for path, headers in (
        ("/v1/usage/history", {"Authorization": f"Bearer {keys[0]}"}),
        ("/admin/usage", {"X-Admin-Token": ADMIN_TOKEN}),
    ):
        answer = get(usage_stack, path, params=params, headers=headers)
        assert answer.status_code == 422, (path, params, answer.text)
        body = answer.json()
        assert body["code"] == "VALIDATION_ERROR" and body["detail"].startswith(f"{param}:"), body


def test_hostile_export_only_parameters(usage_stack: UsageStack) -> None:
    admin = {"X-Admin-Token": ADMIN_TOKEN}
    cases = (
        ({"format": "xml"}, "format"), ({"key_id": "a b"}, "key_id"), ({"key_id": "k" * 500}, "key_id"),
        ({"start": "2026-01-01", "start ": "x"}, "start "),
    )  # fmt: skip
    for params, param in cases:
        answer = get(usage_stack, "/admin/usage", params=params, headers=admin)
        assert answer.status_code == 422 and answer.json()["detail"].startswith(f"{param}:"), answer.text
    repeated = get(usage_stack, "/admin/usage?start=2026-01-01&start=2026-01-02", headers=admin)
    assert repeated.status_code == 422 and repeated.json()["detail"].startswith("start:")


def test_writer_killed_inside_its_transaction(usage_stack: UsageStack, database_url: str) -> None:
    """Deterministic: the writer is blocked inside its transaction (position and hourly rows
    written, the daily row locked by us), SIGKILLed there, restarted: every request once."""
    keys, ids = new_keys(database_url, 1)
    send = Load(usage_stack.envoy.url, lambda i: (keys[0], {"tokens": 2}), 1, clients=1)
    send.start().join()
    wait_for(lambda: usage_stack.postgres.totals(ids)["requests"] == 1)
    loop = asyncio.new_event_loop()
    blocker = loop.run_until_complete(asyncpg.connect(usage_stack.postgres.url))
    try:
        loop.run_until_complete(blocker.execute("BEGIN"))
        loop.run_until_complete(
            blocker.execute("SELECT 1 FROM usage_daily WHERE key_id = $1 FOR UPDATE", ids[0])
        )
        Load(usage_stack.envoy.url, lambda i: (keys[0], {"tokens": 2}), 20, clients=4).start().join()
        # The writer's transaction waits for our row lock (its one connection blocked on a lock).
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        wait_for(lambda: loop.run_until_complete(blocker.fetchval(waiting)) == 1, 15)
        assert usage_stack.postgres.totals(ids)["requests"] == 1  # nothing of it committed
        usage_stack.kill_writer()
        loop.run_until_complete(blocker.execute("ROLLBACK"))
    finally:
        loop.run_until_complete(blocker.close())
        loop.close()
    usage_stack.start_writer()
    settled(
        usage_stack,
        ids,
        {"requests": 21, "tokens": 42, "client_errors": 0, "server_errors": 0, "rate_limited": 0},
    )


def test_log_renamed_and_reopened_under_load(usage_stack: UsageStack, database_url: str) -> None:
    """logrotate's way (rename, then Envoy's POST /reopen_logs) while 32 clients send: exact."""
    keys, ids = new_keys(database_url, 4)
    before, tokens = envoy_counts(usage_stack.envoy), usage_stack.upstream.tokens_reported
    load = Load(usage_stack.envoy.url, body_for(keys)).start()
    time.sleep(1.0)
    usage_stack.log_path.rename(usage_stack.log_path.with_suffix(".jsonl.1"))
    time.sleep(0.5)  # Envoy still writes into the renamed file
    httpx.post(f"{usage_stack.envoy.admin_url}/reopen_logs", timeout=5).raise_for_status()
    wait_for(usage_stack.log_path.exists, 15)  # Envoy opens the new file at its next flush
    time.sleep(1.0)
    tally = load.stop()
    assert "transport" not in tally, tally
    want = expected(usage_stack, before, tokens)
    took = settled(usage_stack, ids, want, timeout=60)  # the writer moves on after 5 quiet seconds
    record("rotation", {"sent": want["requests"], "stored": want, "caught_up_s": round(took, 2)})


def test_a_second_writer_on_the_same_log_counts_nothing_twice(
    usage_stack: UsageStack, database_url: str
) -> None:
    """Two writers racing on one log (a mistake in a deployment): the position's compare-and-set
    lets one commit each chunk; the other's transaction is refused and it re-reads."""
    keys, ids = new_keys(database_url, 4)
    before, tokens = envoy_counts(usage_stack.envoy), usage_stack.upstream.tokens_reported
    second_port = free_port()
    second = usage_stack.spawn_writer("usage-writer-second", second_port)
    try:
        tally = Load(usage_stack.envoy.url, body_for(keys), 1500).start().join()
        want = expected(usage_stack, before, tokens)
        assert "transport" not in tally, tally
        settled(usage_stack, ids, want)
        conflicts = [
            metric(port, "usage_position_conflicts_total") for port in (usage_stack.http_port, second_port)
        ]
    finally:
        second.stop()
    record("two_writers", {"sent": want["requests"], "stored": want, "refused_commits": conflicts})


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_history_costs_no_quota(usage_stack: UsageStack, database_url: str) -> None:
    keys, _ = new_keys(database_url, 1, rate_limit_minute=1)
    auth = {"Authorization": f"Bearer {keys[0]}"}
    codes = [
        httpx.post(f"{usage_stack.envoy.url}/v1/embed", json={}, headers=auth).status_code for _ in range(2)
    ]
    assert codes == [200, 429]
    assert [get(usage_stack, "/v1/usage/history", headers=auth).status_code for _ in range(3)] == [200] * 3

"""Token limits through the session gateway (real Envoy, authz on Postgres, ratelimit on Valkey, adapter
on Triton): the check before the upstream, the charge of x-gateway-tokens when the response is done,
the 429s and headers, /v1/usage and /auth/profile, how the request limit (3/minute here) and the
token limit interact; and fused mode (the charge then goes to the authz service)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ratelimit_service.store import MemoryStore, store_from_url
from ratelimit_service.store.base import CHARGE, CHECK, StoreWindow
from ratelimit_service.windows import Window
from tests.authz_fixtures import ADMIN_TOKEN, bearer, create_key
from tests.conftest import TEST_RATE_LIMIT_MINUTE, Gateway
from tests.integration.test_fused_limits import FusedGateway, start_fused

EMBEDDINGS, EMBED, USAGE, PROFILE = "/v1/embeddings", "/v1/embed", "/v1/usage", "/auth/profile"
TOKEN_HEADERS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
# 24 texts of 3-10 words: one request, one token count for all of them.
BATCH = [" ".join(["word"] * (3 + i % 8)) for i in range(24)]


def embeddings(client: httpx.Client, key: str, texts: list[str]) -> httpx.Response:
    return client.post(EMBEDDINGS, json={"input": texts, "model": "embedder"}, headers=bearer(key))


def tokens_used(client: httpx.Client, key: str, expected: int) -> dict:
    """/v1/usage once the stream-done charge (sent by Envoy after the response) shows `expected`."""
    deadline = time.monotonic() + 10
    while True:
        body = client.get(USAGE, headers=bearer(key)).json()
        if body["usage"].get("tokens_last_minute") == expected or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_a_spent_token_budget_is_a_429_naming_tokens_and_nothing_is_charged(
    client: httpx.Client, database_url: str
) -> None:
    key, _ = create_key(database_url, token_limit_per_minute=40, token_limit_per_day=1000)
    first = embeddings(client, key, BATCH)
    assert first.status_code == 200, first.text
    spent = first.json()["usage"]["prompt_tokens"]
    assert spent > 40 and first.headers["x-gateway-tokens"] == str(spent)
    # The check saw an untouched budget; the whole batch is charged after the response (overshoot).
    assert first.headers["x-ratelimit-limit-tokens"] == "40"
    assert first.headers["x-ratelimit-remaining-tokens"] == "40"
    usage = tokens_used(client, key, spent)
    assert usage["usage"]["tokens_last_minute"] == spent and usage["usage"]["tokens_last_day"] == spent
    assert usage["limits"]["tokens_per_minute"] == 40 and usage["limits"]["tokens_per_day"] == 1000
    refused = client.post(EMBED, json={"input_text": "one more"}, headers=bearer(key))
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["code"] == "RATE_LIMIT_EXCEEDED" and body["limit_type"] == "tokens_per_minute"
    assert body["limit"] == 40 and int(refused.headers["retry-after"]) == body["retry_after"] >= 1
    assert refused.headers["x-ratelimit-limit-tokens"] == "40"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["x-ratelimit-reset-tokens"] == refused.headers["retry-after"]
    assert refused.headers["x-ratelimit-remaining-minute"] == str(TEST_RATE_LIMIT_MINUTE - 1)
    after = tokens_used(client, key, spent)
    assert after["usage"]["requests_last_minute"] == 1  # the refused request cost no request either
    assert after["usage"]["tokens_last_minute"] == spent  # nor tokens


def test_a_batch_is_charged_its_whole_token_count_and_the_profile_shows_it(
    client: httpx.Client, database_url: str
) -> None:
    key, _ = create_key(database_url, token_limit_per_minute=100_000)
    ok = embeddings(client, key, BATCH)
    assert ok.status_code == 200
    spent = ok.json()["usage"]["prompt_tokens"]
    assert int(ok.headers["x-gateway-tokens"]) == spent > len(BATCH)
    assert tokens_used(client, key, spent)["usage"]["tokens_last_minute"] == spent
    second = embeddings(client, key, BATCH[:2])
    assert second.headers["x-ratelimit-remaining-tokens"] == str(100_000 - spent)
    total = spent + int(second.headers["x-gateway-tokens"])
    assert tokens_used(client, key, total)["usage"]["tokens_last_minute"] == total
    profile = client.get(PROFILE, headers=bearer(key)).json()
    assert profile["token_limit_per_minute"] == 100_000 and profile["token_limit_per_day"] is None
    assert profile["limits"]["tokens_per_minute"] == 100_000
    assert profile["usage"]["tokens_last_minute"] == total
    assert profile["usage"]["remaining_tokens_minute"] == 100_000 - total


def test_the_request_limit_still_applies_and_its_429_charges_no_tokens(
    client: httpx.Client, database_url: str
) -> None:
    key, _ = create_key(database_url, token_limit_per_minute=100_000)
    charged = 0
    for _ in range(TEST_RATE_LIMIT_MINUTE):
        ok = client.post(EMBED, json={"input_text": "hello world"}, headers=bearer(key))
        assert ok.status_code == 200
        charged += int(ok.headers["x-gateway-tokens"])
    refused = client.post(EMBED, json={"input_text": "hello world"}, headers=bearer(key))
    assert refused.status_code == 429 and refused.json()["limit_type"] == "minute"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-remaining-tokens"] == str(100_000 - charged)
    assert tokens_used(client, key, charged)["usage"]["tokens_last_minute"] == charged


def test_a_key_without_token_limits_costs_one_limit_call_and_gets_no_token_headers(
    client: httpx.Client, gateway: Gateway, database_url: str
) -> None:
    key, _ = create_key(database_url)

    def limit_calls() -> int:
        text = httpx.get(
            f"{gateway.admin_url}/stats", params={"filter": "^cluster.ratelimit.upstream_rq_total$"}
        )
        return int(text.text.partition(": ")[2] or 0)

    before = limit_calls()
    ok = embeddings(client, key, BATCH[:3])
    assert ok.status_code == 200 and ok.headers["x-gateway-tokens"]
    assert not set(TOKEN_HEADERS) & set(ok.headers)
    time.sleep(0.5)  # a stream-done call, if any, would have been sent by now
    assert limit_calls() - before == 1
    usage = client.get(USAGE, headers=bearer(key)).json()
    assert not any("token" in name for name in (*usage["usage"], *usage["limits"]))


def test_register_takes_token_limits(client: httpx.Client) -> None:
    asked = {"name": "metered", "token_limit_per_minute": 500, "token_limit_per_day": 20_000}
    created = client.post("/auth/register", json=asked, headers={"X-Admin-Token": ADMIN_TOKEN})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["token_limit_per_minute"], body["token_limit_per_day"]) == (500, 20_000)
    ok = client.post(EMBED, json={"input_text": "registered"}, headers=bearer(body["api_key"]))
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-tokens"] == "500"
    bad = client.post(
        "/auth/register", json={"name": "x", "token_limit_per_day": 0}, headers={"X-Admin-Token": ADMIN_TOKEN}
    )
    assert bad.status_code == 422 and "token_limit_per_day" in bad.json()["detail"]


@pytest.fixture(scope="module")
def fused_gateway(
    run_dir: Path, database_url: str, redis_url: str, authz_http_port: int,
    ratelimit_ports: tuple[int, int], inference_adapter: str,
) -> Iterator[FusedGateway]:  # fmt: skip
    ports = (authz_http_port, ratelimit_ports[1])
    adapter = httpx.URL(inference_adapter).port
    assert adapter is not None
    gateway = start_fused(run_dir, "envoy-fused-tokens", database_url, redis_url, ports, adapter)
    yield gateway
    gateway.stop()


def test_fused_mode_checks_in_the_authz_call_and_charges_at_stream_done(
    fused_gateway: FusedGateway, database_url: str
) -> None:
    key, _ = create_key(database_url, token_limit_per_minute=30)
    with httpx.Client(base_url=fused_gateway.url, timeout=30) as client:
        first = embeddings(client, key, BATCH[:8])
        assert first.status_code == 200, first.text
        assert first.headers["x-ratelimit-remaining-tokens"] == "30"
        spent = int(first.headers["x-gateway-tokens"])
        assert spent > 30
        assert tokens_used(client, key, spent)["usage"]["tokens_last_minute"] == spent
        refused = client.post(EMBED, json={"input_text": "more"}, headers=bearer(key))
        assert refused.status_code == 429 and refused.json()["limit_type"] == "tokens_per_minute"
        assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_windows_lua_checks_and_charges_tokens_as_the_memory_store_does(redis_url: str) -> None:
    """Check: blocks when not even one token fits, never charged; charge: always counted."""
    base = f"rl:{{gateway|tokens=v1|api_key={secrets.token_hex(4)}}}"
    minute, day = Window("minute", 10, tokens=True), Window("day", 100, tokens=True)
    check = (StoreWindow(f"{base}:60w", minute, mode=CHECK), StoreWindow(f"{base}:86400w", day, mode=CHECK))
    charge = tuple(StoreWindow(w.key, w.window, mode=CHARGE) for w in check)
    redis, memory = store_from_url(redis_url, 1.0), MemoryStore()
    now = 1_700_000_000_000
    steps = [(check, 1), (charge, 9), (check, 1), (charge, 7), (check, 1), (charge, 0), (check, 1)]
    try:
        for windows, hits in steps:
            on_redis = await redis.apply(windows, hits, now_ms=now)
            in_memory = await memory.apply(windows, hits, now_ms=now)
            assert on_redis == in_memory
        assert not on_redis.allowed and on_redis.states[0].used() == 16  # 9 + 7: the overshoot counts
        assert on_redis.states[1].remaining() == 84
    finally:
        await redis.close()

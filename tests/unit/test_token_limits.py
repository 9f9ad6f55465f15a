"""Token limits in the limiter (in-memory store, fake clock): the check before the upstream refuses a
spent budget without charging, the charge at stream done always counts (overshoot included), the
429 names the token window, headers and usage report tokens; a key without token limits is as before."""

from __future__ import annotations

import json

import pytest
from envoy.extensions.common.ratelimit.v3.ratelimit_pb2 import RateLimitDescriptor
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest
from google.protobuf.wrappers_pb2 import UInt64Value

from ratelimit_service import responses, tokens
from ratelimit_service.config import DEFAULT_CONFIG, load_config
from ratelimit_service.limiter import OK, OVER_LIMIT, Limiter, RequestDescriptor
from ratelimit_service.local_cache import OverLimitCache
from ratelimit_service.service import parse
from ratelimit_service.store.base import CHARGE, CHECK, StoreWindow
from ratelimit_service.store.memory import MemoryStore
from ratelimit_service.usage import limiter_usage
from ratelimit_service.windows import Window

NOW_MS = 1_700_000_000_000


class Clock:
    ms = NOW_MS

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> Limiter:
    return Limiter(load_config(DEFAULT_CONFIG), MemoryStore(clock.now_ms), OverLimitCache(clock.monotonic))


def request(key: str) -> RequestDescriptor:
    return RequestDescriptor((("route", "v1"), ("plan", "free"), ("api_key", key)))


def token(key: str, hits: int, limits: str = "minute=100,day=1000") -> RequestDescriptor:
    return RequestDescriptor((*tokens.entries(key), (tokens.LIMITS_KEY, limits)), hits=hits)


async def check(limiter: Limiter, key: str, limits: str = "minute=100,day=1000"):
    """What Envoy asks before the upstream: the request (charged 1) and the token check."""
    return await limiter.decide("gateway", [request(key), token(key, 0, limits)])


async def charge(limiter: Limiter, key: str, n: int, limits: str = "minute=100,day=1000") -> None:
    verdict = await limiter.decide("gateway", [token(key, n, limits)])
    assert verdict.code == OK and verdict.decision is None  # Envoy ignores the answer


def test_token_limits_text_round_trips_and_skips_junk() -> None:
    assert tokens.format_limits({"minute": 100, "day": None}) == "minute=100"
    assert tokens.format_limits({"minute": None}) is None
    assert tokens.parse_limits("minute=100,day=5000.0") == {"minute": 100, "day": 5000}
    assert tokens.parse_limits("minute=0,hour=5,day=x,,junk") == {}


@pytest.mark.parametrize("mode, flag", [(CHECK, "t"), (CHARGE, "c"), ("", "1")])
def test_store_flags(mode: str, flag: str) -> None:
    assert StoreWindow("k", Window("minute", 1), mode=mode).flag() == flag


async def test_the_check_charges_nothing_and_refuses_once_the_budget_is_spent(limiter: Limiter) -> None:
    first = await check(limiter, "k1")
    assert first.code == OK
    headers = dict(responses.limit_header_values(first.decision))
    assert headers["x-ratelimit-limit-tokens"] == "100" and headers["x-ratelimit-remaining-tokens"] == "100"
    assert headers["x-ratelimit-remaining-minute"] == "59"  # the request windows as before
    await charge(limiter, "k1", 99)
    assert (await check(limiter, "k1")).code == OK  # one token left: still admitted
    await charge(limiter, "k1", 30)  # overshoot: counted in full
    refused = await check(limiter, "k1")
    assert refused.code == OVER_LIMIT
    body = json.loads(responses.from_verdict(refused, 2).raw_body)
    assert body["limit_type"] == "tokens_per_minute" and body["limit"] == 100
    assert body["code"] == "RATE_LIMIT_EXCEEDED" and "100 tokens per minute" in body["detail"]
    assert body["retry_after"] >= 1
    denied = dict(responses.limit_header_values(refused.decision))
    assert denied["x-ratelimit-remaining-tokens"] == "0"
    assert denied["x-ratelimit-reset-tokens"] == str(refused.retry_after)
    assert denied["x-ratelimit-remaining"] != "0"  # the request windows did not deny
    usage = await limiter_usage(limiter, "k1", token_limits={"minute": 100, "day": 1000})
    assert usage is not None
    assert usage["usage"]["tokens_last_minute"] == 129 and usage["usage"]["tokens_last_day"] == 129
    assert usage["usage"]["requests_last_minute"] == 2  # the refused request was not charged
    assert usage["limits"]["tokens_per_minute"] == 100 and usage["limits"]["tokens_per_day"] == 1000


async def test_the_day_window_names_itself_when_it_denies(limiter: Limiter) -> None:
    await charge(limiter, "k2", 50, "day=50")
    refused = await check(limiter, "k2", "day=50")
    assert json.loads(responses.from_verdict(refused, 2).raw_body)["limit_type"] == "tokens_per_day"


async def test_a_request_limit_denial_leaves_the_token_headers_describing_tokens(limiter: Limiter) -> None:
    for _ in range(60):
        assert (await check(limiter, "k3")).code == OK
    refused = await check(limiter, "k3")
    body = json.loads(responses.from_verdict(refused, 2).raw_body)
    assert body["limit_type"] == "minute"
    headers = dict(responses.limit_header_values(refused.decision))
    assert headers["x-ratelimit-remaining"] == "0" and headers["x-ratelimit-remaining-tokens"] == "100"


async def test_a_key_without_token_limits_gets_no_token_headers(limiter: Limiter) -> None:
    verdict = await limiter.decide("gateway", [request("k4")])
    names = {name for name, _ in responses.limit_header_values(verdict.decision)}
    assert not names & set(responses.TOKEN_HEADERS)
    usage = await limiter_usage(limiter, "k4")
    assert usage is not None and not any("token" in name for name in usage["usage"])


def test_envoy_per_descriptor_hits_addend_is_parsed() -> None:
    entry = RateLimitDescriptor.Entry
    message = RateLimitRequest(
        domain="gateway",
        descriptors=[
            RateLimitDescriptor(entries=[entry(key="route", value="v1")]),
            RateLimitDescriptor(entries=[entry(key="tokens", value="v1")], hits_addend=UInt64Value(value=0)),
        ],
    )
    _, descriptors, hits = parse(RateLimitRequest.FromString(message.SerializeToString()))
    assert [d.hits for d in descriptors] == [None, 0] and hits == 1

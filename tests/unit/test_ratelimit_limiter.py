"""The limiter on the in-memory store with fake clocks: matching, overrides, shadow mode,
replaces, the local over-limit cache, failure modes, progressive Retry-After, responses."""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import Sequence

import pytest
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse
from prometheus_client import REGISTRY

from ratelimit_service import responses
from ratelimit_service.config import load_config, parse_text
from ratelimit_service.config.model import RateLimitConfig
from ratelimit_service.limiter import OK, OVER_LIMIT, UNAVAILABLE, Limiter, RequestDescriptor
from ratelimit_service.local_cache import OverLimitCache
from ratelimit_service.store.base import StoreResult, StoreWindow
from ratelimit_service.store.memory import MemoryStore
from ratelimit_service.windows import Window

CONFIG = """
domain: gateway
descriptors:
  - key: route
    value: v1
    descriptors:
      - key: plan
        descriptors:
          - key: api_key
            rate_limits:
              - {unit: minute, requests_per_unit: 3}
              - {unit: hour, requests_per_unit: 5}
      - key: plan
        value: pro
        descriptors:
          - key: api_key
            rate_limit: {unit: minute, requests_per_unit: 10, algorithm: sliding_log}
  - key: tenant
    rate_limit: {unit: minute, requests_per_unit: 1, name: tenant}
    shadow_mode: true
  - key: team
    rate_limit: {unit: minute, requests_per_unit: 2, name: team, replaces: [{name: org}]}
  - key: org
    rate_limit: {unit: minute, requests_per_unit: 1, name: org}
  - key: free
    rate_limit: {unlimited: true}
  - key: backoff
    rate_limit: {unit: hour, requests_per_unit: 1}
    retry_after: {backoff: progressive}
"""


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


class CountingStore(MemoryStore):
    """The real in-memory store, counting round trips (to see the local cache at work)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock.now_ms)
        self.calls = 0

    async def apply(self, windows: Sequence[StoreWindow], hits: int = 1, **kw: object) -> StoreResult:
        self.calls += 1
        return await super().apply(windows, hits, **kw)  # type: ignore[arg-type]


class BrokenStore(MemoryStore):
    async def apply(self, *args: object, **kw: object) -> StoreResult:
        raise ConnectionError("connection refused")


def config(text: str = CONFIG) -> RateLimitConfig:
    domain = parse_text(textwrap.dedent(text), "test.yaml")[0]
    return RateLimitConfig({domain.domain: domain})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> CountingStore:
    return CountingStore(clock)


@pytest.fixture
def limiter(store: CountingStore, clock: Clock) -> Limiter:
    return Limiter(config(), store, OverLimitCache(clock.monotonic), random.Random(7))


def key(api_key: str, plan: str = "free", *extra: tuple[str, str]) -> RequestDescriptor:
    return RequestDescriptor((("route", "v1"), ("plan", plan), ("api_key", api_key), *extra))


def one(*entries: tuple[str, str]) -> RequestDescriptor:
    return RequestDescriptor(tuple(entries))


async def codes(limiter: Limiter, descriptors: list[RequestDescriptor], n: int) -> list[str]:
    return [(await limiter.decide("gateway", descriptors)).code for _ in range(n)]


async def test_both_windows_apply_and_the_429_names_the_denying_one(limiter: Limiter) -> None:
    assert await codes(limiter, [key("k1")], 4) == [OK, OK, OK, OVER_LIMIT]
    verdict = await limiter.decide("gateway", [key("k1")])
    response = responses.from_verdict(verdict, 1)
    assert response.overall_code == RateLimitResponse.OVER_LIMIT
    body = json.loads(response.raw_body)
    assert body["code"] == "RATE_LIMIT_EXCEEDED" and body["limit"] == 3 and body["limit_type"] == "minute"
    headers = {h.key: h.value for h in response.response_headers_to_add}
    assert headers["retry-after"] == str(body["retry_after"]) == headers["x-ratelimit-reset"]
    assert headers["x-ratelimit-limit"] == "3" and headers["x-ratelimit-remaining"] == "0"
    assert headers["content-type"] == "application/json"
    assert response.statuses[0].code == RateLimitResponse.OVER_LIMIT
    assert response.statuses[0].current_limit.requests_per_unit == 3


async def test_ok_responses_carry_remaining_quota_per_window(limiter: Limiter) -> None:
    response = responses.from_verdict(await limiter.decide("gateway", [key("k2")]), 1)
    headers = {h.key: h.value for h in response.response_headers_to_add}
    assert headers["x-ratelimit-limit-minute"] == "3" and headers["x-ratelimit-remaining-minute"] == "2"
    assert headers["x-ratelimit-limit-hour"] == "5" and headers["x-ratelimit-remaining-hour"] == "4"
    assert headers["x-ratelimit-limit"] == "3" and headers["x-ratelimit-remaining"] == "2"


async def test_the_hour_window_denies_after_the_minute_frees(limiter: Limiter, clock: Clock) -> None:
    assert await codes(limiter, [key("k3")], 3) == [OK] * 3
    clock.advance(180)  # two minutes on: the minute window is empty again
    assert await codes(limiter, [key("k3")], 3) == [OK, OK, OVER_LIMIT]
    verdict = await limiter.decide("gateway", [key("k3")])
    assert verdict.decision is not None and verdict.decision.blocking().window.unit == "hour"


async def test_plan_specific_limits_beat_the_any_plan_default(limiter: Limiter) -> None:
    assert await codes(limiter, [key("k4", "pro")], 11) == [OK] * 10 + [OVER_LIMIT]


async def test_per_key_overrides_beat_the_config(limiter: Limiter) -> None:
    # rate_limit_<unit> entries (from authz metadata) change limits, not the counter key.
    overridden = key("k5", "free", ("rate_limit_minute", "5"), ("rate_limit_hour", "6.0"))
    assert await codes(limiter, [overridden], 6) == [OK] * 5 + [OVER_LIMIT]
    per_key = RequestDescriptor(key("k6").entries, {"second": 1})
    assert await codes(limiter, [per_key], 2) == [OK, OVER_LIMIT]
    # An override alone (no config match) still limits.
    assert await codes(limiter, [one(("nothing", "x"), ("rate_limit_minute", "1"))], 2) == [OK, OVER_LIMIT]
    # Garbage override values are ignored.
    assert (await codes(limiter, [key("k7", "free", ("rate_limit_minute", "lots"))], 4))[-1] == OVER_LIMIT


async def test_shadow_mode_counts_but_never_blocks(limiter: Limiter) -> None:
    before = REGISTRY.get_sample_value(
        "ratelimit_decisions_total",
        {"domain": "gateway", "descriptor": "tenant", "result": "shadow_over_limit"},
    )
    assert await codes(limiter, [one(("tenant", "t1"))], 3) == [OK] * 3
    after = REGISTRY.get_sample_value(
        "ratelimit_decisions_total",
        {"domain": "gateway", "descriptor": "tenant", "result": "shadow_over_limit"},
    )
    assert after == (before or 0) + 2
    shadow_only = await limiter.decide("gateway", [one(("tenant", "t1"))])
    assert responses.from_verdict(shadow_only, 1) == responses.OK  # no headers from a shadow limit


async def test_replaces_drops_the_replaced_limit_only_when_both_match(limiter: Limiter) -> None:
    both = [one(("team", "a")), one(("org", "o1"))]
    assert await codes(limiter, both, 3) == [OK, OK, OVER_LIMIT]  # team's 2/min, not org's 1/min
    assert await codes(limiter, [one(("org", "o2"))], 2) == [OK, OVER_LIMIT]


async def test_unlimited_unknown_descriptors_and_domains_pass(limiter: Limiter) -> None:
    assert await codes(limiter, [one(("free", "x"))], 5) == [OK] * 5
    assert (await limiter.decide("gateway", [one(("nope", "x"))])).decision is None
    assert (await limiter.decide("other", [key("k8")])).code == OK


async def test_over_limit_is_answered_from_memory_until_the_window_frees(
    limiter: Limiter, store: CountingStore, clock: Clock
) -> None:
    limiter.config = config(
        "domain: gateway\ndescriptors:\n  - key: k\n"
        "    rate_limit: {unit: second, requests_per_unit: 1, algorithm: fixed_window}\n"
    )
    clock.ms = clock.ms // 1000 * 1000 + 200  # 200 ms into a second
    assert await codes(limiter, [one(("k", "a"))], 2) == [OK, OVER_LIMIT]
    calls = store.calls
    assert await codes(limiter, [one(("k", "a"))], 5) == [OVER_LIMIT] * 5
    assert store.calls == calls  # no round trips while the window is known to be full
    clock.advance(0.8)
    assert await codes(limiter, [one(("k", "a"))], 1) == [OK]
    assert store.calls == calls + 1


async def test_store_down_applies_the_failure_mode(clock: Clock) -> None:
    allow = Limiter(config(), BrokenStore(clock.now_ms))
    assert (await allow.decide("gateway", [key("k9")])).code == OK
    deny = Limiter(
        config(CONFIG.replace("domain: gateway", "domain: gateway\nfailure_mode: deny")), BrokenStore()
    )
    verdict = await deny.decide("gateway", [key("k9")])
    assert verdict.code == UNAVAILABLE
    response = responses.from_verdict(verdict, 1)
    assert response.overall_code == RateLimitResponse.OVER_LIMIT
    assert json.loads(response.raw_body)["code"] == "SERVICE_UNAVAILABLE"
    assert response.dynamic_metadata["store"] == "unavailable"
    assert (await deny.decide("gateway", [one(("nope", "x"))])).code == OK  # nothing to limit


async def test_progressive_retry_after_grows_with_overage_and_stays_under_the_exact_wait(
    limiter: Limiter,
) -> None:
    retries = []
    for _ in range(60):
        verdict = await limiter.decide("gateway", [one(("backoff", "b"))])
        if verdict.code == OVER_LIMIT:
            retries.append(verdict.retry_after)
    assert len(retries) == 59
    assert all(1 <= r <= 3 for r in retries[:10])  # light overage
    assert all(3 <= r <= 8 for r in retries[10:30])  # moderate
    assert all(8 <= r <= 15 for r in retries[30:])  # heavy
    exact = Limiter(config(CONFIG.replace("    retry_after: {backoff: progressive}\n", "")), MemoryStore())
    await exact.decide("gateway", [one(("backoff", "c"))])
    assert (await exact.decide("gateway", [one(("backoff", "c"))])).retry_after > 15 * 60  # hour window


async def test_requests_larger_than_the_limit_are_denied_with_a_whole_window(limiter: Limiter) -> None:
    verdict = await limiter.decide("gateway", [key("k10")], hits=4)
    assert verdict.code == OVER_LIMIT and verdict.retry_after >= 60
    # The oversized request does not make the key look full to the local cache.
    assert (await limiter.decide("gateway", [key("k10")])).code == OK


async def test_usage_reads_without_charging(limiter: Limiter) -> None:
    await codes(limiter, [key("k11")], 2)
    entries = key("k11").entries
    first = await limiter.usage("gateway", entries)
    second = await limiter.usage("gateway", entries)
    assert [s.used() for s in first] == [s.used() for s in second] == [2, 2]
    assert [s.window.limit for s in await limiter.usage("gateway", entries, {"minute": 9})] == [9, 5]


def test_default_config_loads() -> None:
    from ratelimit_service.config import DEFAULT_CONFIG

    assert "gateway" in load_config(DEFAULT_CONFIG).domains


async def test_remembered_plans_follow_a_config_reload_and_per_key_overrides(limiter: Limiter) -> None:
    """Plans are kept per descriptor set; a reload or a different override must not reuse one."""
    first = [(await limiter.decide("gateway", [key("k_reload")])).code for _ in range(4)]
    assert first == [OK, OK, OK, OVER_LIMIT]  # 3/minute
    assert limiter.plan(limiter.config.domain("gateway"), [key("k_reload")]) is limiter.plan(
        limiter.config.domain("gateway"), [key("k_reload")]
    )
    limiter.set_config(config(CONFIG.replace("requests_per_unit: 3}", "requests_per_unit: 6}")))
    again = [(await limiter.decide("gateway", [key("k_reload")])).code for _ in range(3)]
    assert again == [OK, OK, OVER_LIMIT]  # 6/minute now, 3 already used; hour allows 5 in all
    own = RequestDescriptor(key("k_own").entries, {"minute": 1})
    assert [(await limiter.decide("gateway", [own])).code for _ in range(2)] == [OK, OVER_LIMIT]
    assert (await limiter.decide("gateway", [key("k_own")])).code == OK  # the plan default again


async def test_the_wire_handler_remembers_a_request_but_charges_every_call(limiter: Limiter) -> None:
    """The bytes handler parses a request once; every call is still decided and charged."""
    from ratelimit_service.service import RateLimitService
    from tests.ratelimit_fixtures import rl_request

    service = RateLimitService(limiter)
    raw = rl_request("gateway", [("route", "v1"), ("plan", "free"), ("api_key", "wire")], hits=1)
    wire = raw.SerializeToString()
    answers = [await service.should_rate_limit_raw(wire, None) for _ in range(4)]
    answers = [RateLimitResponse.FromString(a) for a in answers]
    remaining = [{h.key: h.value for h in a.response_headers_to_add} for a in answers]
    remaining = [headers.get("x-ratelimit-remaining") for headers in remaining]
    assert remaining[:3] == ["2", "1", "0"]
    assert answers[3].overall_code == RateLimitResponse.OVER_LIMIT  # the 4th of 3/min
    assert len(service._requests) == 1
    # The message handler decides the same request the same way (it is now over the limit too).
    assert (await service.ShouldRateLimit(raw, None)).overall_code == RateLimitResponse.OVER_LIMIT


async def test_envoys_limit_field_replaces_the_whole_limit_as_in_envoyproxy_ratelimit(
    limiter: Limiter,
) -> None:
    # The config gives this key 3/minute and 5/hour; Envoy's `limit` of 4/minute replaces both.
    envoy_limit = RequestDescriptor(key("k8").entries, limit=Window("minute", 4))
    assert await codes(limiter, [envoy_limit], 5) == [OK] * 4 + [OVER_LIMIT]
    verdict = await limiter.decide("gateway", [envoy_limit])
    assert verdict.decision is not None and [s.window for s in verdict.decision.states] == [
        Window("minute", 4)
    ]
    # It applies to a descriptor no rule matches, too, and a limit of 0 refuses everything.
    assert await codes(limiter, [RequestDescriptor((("nothing", "x"),), limit=Window("hour", 1))], 2) == [
        OK,
        OVER_LIMIT,
    ]
    assert await codes(limiter, [RequestDescriptor((("zero", "x"),), limit=Window("second", 0))], 1) == [
        OVER_LIMIT
    ]


QUOTA = """
domain: quota
algorithm: fixed_window
descriptors:
  - key: plan_quota
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: burst_quota
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 3}
  - key: hard
    rate_limit: {unit: hour, requests_per_unit: 10}
"""


async def test_quota_mode_refuses_only_when_every_quota_descriptor_is_over(clock: Clock) -> None:
    limits = Limiter(config(QUOTA), MemoryStore(clock.now_ms), OverLimitCache(clock.monotonic))
    both = [one(("plan_quota", "a")), one(("burst_quota", "a")), one(("hard", "a"))]
    results = [(await limits.decide("quota", both)).code for _ in range(5)]
    # The plan quota (2) runs out first; the burst quota (3) still lets one more through.
    assert results == [OK, OK, OK, OVER_LIMIT, OVER_LIMIT]
    # A quota descriptor alone is limited by itself.
    alone = [one(("plan_quota", "b"))]
    assert [(await limits.decide("quota", alone)).code for _ in range(3)] == [OK, OK, OVER_LIMIT]


async def test_envoyproxy_ratelimit_stats_count_hits_per_rule(clock: Clock) -> None:
    text = (
        "domain: stats\nalgorithm: fixed_window\ndescriptors:\n"
        "  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 10}\n"
    )
    limits = Limiter(config(text), MemoryStore(clock.now_ms), OverLimitCache(clock.monotonic))

    def stat(name: str) -> float:
        return (
            REGISTRY.get_sample_value(
                f"ratelimit_service_rate_limit_{name}_total", {"domain": "stats", "key": "k"}
            )
            or 0
        )

    for _ in range(5):
        assert (await limits.decide("stats", [one(("k", "a"))], hits=2)).code == OK
    assert (await limits.decide("stats", [one(("k", "a"))], hits=2)).code == OVER_LIMIT
    # 10 hits admitted, 2 refused; near_limit counts the admitted hits above 80% (8) of 10.
    assert (stat("total_hits"), stat("within_limit"), stat("over_limit"), stat("near_limit")) == (
        12,
        10,
        2,
        2,
    )

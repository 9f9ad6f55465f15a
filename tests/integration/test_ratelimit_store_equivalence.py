"""The in-memory store and windows.lua on a real Valkey decide identically on the same traffic:
hypothesis picks request sequences over one config with every feature that changes what the
store is asked (three algorithms, shadow mode, quota groups, share_threshold, replaces,
unlimited, a zero limit, per-key overrides, Envoy's own limit), both stores on one fake clock."""

from __future__ import annotations

import asyncio
import secrets
from types import MappingProxyType

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from ratelimit_service.config import RateLimitConfig, parse_text
from ratelimit_service.limiter import Limiter, RequestDescriptor
from ratelimit_service.local_cache import OverLimitCache
from ratelimit_service.store import MemoryStore, StoreResult, WindowStore, store_from_url
from ratelimit_service.store.redis import RedisStore
from ratelimit_service.windows import Window

START = 1_700_000_000_123  # ms; not aligned to any window, so buckets start mid-run
CONFIG = """
domain: {domain}
descriptors:
  - key: sw
    rate_limit: {{unit: second, requests_per_unit: 3}}
  - key: multi
    rate_limits:
      - {{unit: second, requests_per_unit: 2, algorithm: fixed_window}}
      - {{unit: minute, requests_per_unit: 6, algorithm: sliding_log}}
  - key: log
    rate_limit: {{unit: minute, requests_per_unit: 5, algorithm: sliding_log}}
  - key: shadow
    shadow_mode: true
    rate_limit: {{unit: second, requests_per_unit: 1, algorithm: sliding_log}}
  - key: quota_a
    quota_mode: true
    rate_limit: {{unit: minute, requests_per_unit: 3, algorithm: fixed_window}}
  - key: quota_b
    quota_mode: true
    rate_limit: {{unit: minute, requests_per_unit: 2}}
  - key: user
    value: team*
    share_threshold: true
    rate_limit: {{unit: minute, requests_per_unit: 4, algorithm: sliding_log}}
  - key: team
    rate_limit: {{unit: minute, requests_per_unit: 10, name: team, replaces: [{{name: org}}]}}
  - key: org
    rate_limit: {{unit: second, requests_per_unit: 1, name: org}}
  - key: free
    rate_limit: {{unlimited: true}}
  - key: blocked
    rate_limit: {{unit: hour, requests_per_unit: 0, algorithm: fixed_window}}
  - key: route
    value: v1
    descriptors:
      - key: api_key
        rate_limits:
          - {{unit: minute, requests_per_unit: 4}}
          - {{unit: hour, requests_per_unit: 7, algorithm: fixed_window}}
"""
# What one request descriptor may be; a request is 1-3 of them, repeats allowed (Envoy may send
# the same descriptor twice, and team1 + team2 share one counter through share_threshold).
POOL = (
    RequestDescriptor((("sw", "a"),)),
    RequestDescriptor((("multi", "a"),)),
    RequestDescriptor((("log", "a"),)),
    RequestDescriptor((("shadow", "a"),)),
    RequestDescriptor((("quota_a", "a"),)),
    RequestDescriptor((("quota_b", "a"),)),
    RequestDescriptor((("user", "team1"),)),
    RequestDescriptor((("user", "team2"),)),
    RequestDescriptor((("user", "other"),)),  # no rule
    RequestDescriptor((("team", "t"),)),  # replaces org
    RequestDescriptor((("org", "o"),)),
    RequestDescriptor((("free", "f"),)),  # unlimited
    RequestDescriptor((("blocked", "b"),)),  # requests_per_unit: 0
    RequestDescriptor((("route", "v1"), ("api_key", "k1"))),
    RequestDescriptor((("route", "v1"), ("api_key", "k2"), ("rate_limit_minute", "2"))),  # override
    RequestDescriptor((("envoy", "e"),), limit=Window("second", 2, "sliding_log")),  # Envoy's limit
)

# One step: which descriptors, how many hits, how far the clock moves, and whether it only peeks
# (a usage read: hits 0, nothing charged). Valkey expires keys on its real clock (PEXPIRE), the
# memory store on the fake one; an example lasts milliseconds, far less than any window.
STEP = st.tuples(
    st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=3),
    st.integers(1, 3),
    st.integers(0, 20_000),
    st.integers(0, 9).map(lambda n: n == 0),
)
Step = tuple[list[int], int, int, bool]


@st.composite
def traffic(draw: st.DrawFn) -> list[Step]:
    """Mostly 30-50 steps: a drawn length instead of st.lists' short default (too few to fill
    windows), which still shrinks towards a one-step sequence."""
    length = draw(st.integers(1, 60))
    return draw(st.lists(STEP, min_size=length, max_size=length))


def limiter(config: RateLimitConfig, store: WindowStore) -> Limiter:
    # No local over-limit cache: every decision must come from the store under test.
    return Limiter(config, store, OverLimitCache(max_entries=0))


async def run_both(redis_url: str, start: int, steps: list[Step]) -> None:
    # A fresh domain per example: its counter keys (rl:{domain|...}) never met earlier traffic.
    domain = f"eq_{secrets.token_hex(6)}"
    loaded = parse_text(CONFIG.format(domain=domain), "equivalence.yaml")[0]
    config = RateLimitConfig(MappingProxyType({domain: loaded}))
    redis_store = store_from_url(redis_url, timeout=2.0)
    assert isinstance(redis_store, RedisStore)
    memory, redis = limiter(config, MemoryStore()), limiter(config, redis_store)
    now = start
    try:
        for n, (picks, hits, advance_ms, peek) in enumerate(steps):
            now += advance_ms
            descriptors = [POOL[i] for i in picks]
            plan = memory.plan(loaded, descriptors)
            assert redis.plan(loaded, descriptors).windows == plan.windows
            if not plan.windows:
                continue  # nothing limited: the limiter does not ask the store
            hits = 0 if peek else hits
            # The limiter's own call, with the clock both stores share instead of each one's.
            want: StoreResult = await memory.store.apply(plan.windows, hits, peek=peek, now_ms=now)
            got: StoreResult = await redis.store.apply(plan.windows, hits, peek=peek, now_ms=now)
            where = (
                f"step {n}: {[POOL[i].entries for i in picks]} hits={hits} peek={peek} now={now}"
                f" (start {start}, steps so far {steps[: n + 1]})"
            )
            assert (got.allowed, got.fits, got.states) == (want.allowed, want.fits, want.states), where
    finally:
        await redis_store.close()


# No shrinking: with a Valkey round trip per step it takes minutes. A failure names its step,
# descriptors and clock; the repeated-counter case has its own small test below.
@settings(max_examples=100, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(start_offset=st.integers(0, 3_600_000), steps=traffic())
def test_memory_and_redis_stores_decide_alike(redis_url: str, start_offset: int, steps: list[Step]) -> None:
    # A plain test running its own loop: hypothesis drives the examples, each with a fresh store.
    asyncio.run(run_both(redis_url, START + start_offset, steps))


def test_a_request_naming_one_counter_twice_is_counted_alike(redis_url: str) -> None:
    # user=team1 and user=team2 share the user=team* counter (share_threshold): one request
    # with both charges one sliding log twice over. Spelled out, as hypothesis may miss it.
    team1, team2 = (POOL.index(RequestDescriptor((("user", v),))) for v in ("team1", "team2"))
    steps: list[Step] = [([team1, team2], 1, 0, False)] * 3 + [([team1], 1, 0, True)]
    asyncio.run(run_both(redis_url, START, steps))

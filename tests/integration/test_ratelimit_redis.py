"""windows.lua on a real Valkey (single node and a 3-master Cluster) decides exactly like the
in-memory store on the same traffic (same injected clock), for every algorithm."""

from __future__ import annotations

import asyncio
import random
import secrets

import pytest
import redis.asyncio as redis

from ratelimit_service.plan import counter_base, store_windows
from ratelimit_service.store import MemoryStore, store_from_url
from ratelimit_service.store.redis import RedisStore
from ratelimit_service.windows import Window

ALGORITHMS = ("sliding_window", "sliding_log", "fixed_window")
START = 1_700_000_000_123


@pytest.fixture(params=["single", "cluster"])
def store_url(request: pytest.FixtureRequest) -> str:
    fixture = "redis_url" if request.param == "single" else "redis_cluster_url"
    return request.getfixturevalue(fixture)


def random_windows(rnd: random.Random, algorithm: str, tag: str):
    windows = (
        Window("second", rnd.randint(1, 5), algorithm),
        Window("minute", rnd.randint(2, 12), algorithm),
    )
    enforced = rnd.random() < 0.8
    base = counter_base("test", [("api_key", tag)])
    return store_windows(base, windows[:1], True) + store_windows(base, windows[1:], enforced)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_lua_matches_the_in_memory_store(store_url: str, algorithm: str) -> None:
    rl = store_from_url(store_url, timeout=2.0)
    memory = MemoryStore()
    rnd = random.Random(algorithm)
    try:
        for trial in range(8):
            windows = random_windows(rnd, algorithm, f"{secrets.token_hex(4)}-{trial}")
            now = START
            for step in range(50):
                now += rnd.choice([0, 1, 50, 333, 999, 1000, 4000, 30_000])
                hits, peek = rnd.choice([1, 1, 1, 2, 3]), rnd.random() < 0.1
                got = await rl.apply(windows, hits, peek=peek, now_ms=now)
                want = await memory.apply(windows, hits, peek=peek, now_ms=now)
                assert got == want, f"trial {trial} step {step}"
    finally:
        await rl.close()


async def test_cluster_spreads_descriptors_and_keeps_each_one_atomic(redis_cluster_url: str) -> None:
    rl = store_from_url(redis_cluster_url, timeout=2.0)
    assert isinstance(rl, RedisStore) and rl.cluster
    limit = Window("minute", 3, "sliding_log")
    try:
        tags = [f"spread-{secrets.token_hex(3)}-{i}" for i in range(30)]
        specs = [store_windows(counter_base("test", [("k", t)]), (limit,), True) for t in tags]
        results = await asyncio.gather(*(rl.apply(s) for s in specs for _ in range(5)))
        assert sum(r.allowed for r in results) == 3 * len(tags)
        slots = {await rl.client.cluster_keyslot(s[0].key) for s in specs}
        nodes = {rl.client.get_node_from_key(s[0].key).name for s in specs}
        assert len(slots) > 1 and len(nodes) == 3  # the keys really live on all three masters
        # Two descriptors in different slots: one script per slot, the later one only read
        # when the first denies, so a rejected request charges nothing.
        a, b = specs[0] + specs[1], specs[1] + specs[0]
        assert not (await rl.apply(a)).allowed and not (await rl.apply(b)).allowed
        fresh = store_windows(counter_base("test", [("k", "fresh-" + secrets.token_hex(3))]), (limit,), True)
        assert not (await rl.apply(specs[0] + fresh)).allowed
        assert (await rl.apply(fresh, peek=True)).states[0].used() == 0
    finally:
        await rl.close()


async def test_idle_keys_vanish_and_the_log_holds_only_admitted_requests(redis_url: str) -> None:
    rl = store_from_url(redis_url, timeout=2.0)
    client = redis.Redis.from_url(redis_url)
    base = counter_base("test", [("api_key", secrets.token_hex(4))])
    specs = store_windows(
        base, (Window("second", 2, "sliding_log"), Window("minute", 9, "fixed_window")), True
    )
    try:
        results = [await rl.apply(specs) for _ in range(4)]
        assert [r.allowed for r in results] == [True, True, False, False]
        assert await client.zcard(specs[0].key) == 2
        assert 0 < await client.pttl(specs[0].key) <= 1000
        assert 0 < await client.pttl(specs[1].key) <= 61_000
        await asyncio.sleep(1.1)
        assert await client.exists(specs[0].key) == 0
    finally:
        await client.aclose()
        await rl.close()

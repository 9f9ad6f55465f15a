"""The Lua script on a real Valkey agrees with the pure sliding-window maths."""

from __future__ import annotations

import asyncio
import secrets

import redis.asyncio as redis

from ratelimit_service.redis_store import RedisWindowStore, window_key
from ratelimit_service.windows import Window

WINDOWS = (Window("minute", 5), Window("hour", 8))


def subject() -> str:
    return f"test-{secrets.token_hex(4)}"


async def test_admits_up_to_the_limit_then_denies_without_counting(redis_url: str) -> None:
    store = RedisWindowStore.from_url(redis_url)
    who = subject()
    try:
        decisions = [await store.hit(who, WINDOWS) for _ in range(7)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        assert [d.states[0].remaining() for d in decisions[:5]] == [4, 3, 2, 1, 0]
        # Rejected requests used no quota: both windows still hold exactly 5.
        assert decisions[-1].states[0].cur == 5 and decisions[-1].states[1].cur == 5
        assert decisions[-1].blocking().window.unit == "minute"
        assert 1 <= decisions[-1].retry_after() <= 120
    finally:
        await store.close()


async def test_all_windows_are_checked_and_keys_expire(redis_url: str) -> None:
    store = RedisWindowStore.from_url(redis_url)
    who = subject()
    tight_hour = (Window("minute", 100), Window("hour", 2))
    try:
        assert (await store.hit(who, tight_hour)).allowed
        assert (await store.hit(who, tight_hour)).allowed
        denied = await store.hit(who, tight_hour)
        assert not denied.allowed
        assert denied.blocking().window.unit == "hour"
        assert denied.states[0].cur == 2  # the minute window was not charged either
        client = redis.Redis.from_url(redis_url)
        found = [k async for k in client.scan_iter(f"{window_key(who, tight_hour[1])}:*")]
        assert len(found) == 1
        ttl_ms = await client.pttl(found[0])
        assert 0 < ttl_ms <= 2 * 3600 * 1000 + 1000
        await client.aclose()
    finally:
        await store.close()


async def test_concurrent_hits_never_exceed_the_limit(redis_url: str) -> None:
    store = RedisWindowStore.from_url(redis_url)
    who = subject()
    try:
        results = await asyncio.gather(*(store.hit(who, WINDOWS) for _ in range(40)))
        assert sum(d.allowed for d in results) == 5
    finally:
        await store.close()


async def test_script_is_reloaded_after_script_flush(redis_url: str) -> None:
    store = RedisWindowStore.from_url(redis_url)
    try:
        assert (await store.hit(subject(), WINDOWS)).allowed
        await store.client.script_flush()
        assert (await store.hit(subject(), WINDOWS)).allowed
    finally:
        await store.close()

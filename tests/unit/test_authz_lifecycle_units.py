"""Small pieces of the key lifecycle: batched last-use, cache invalidation, key prefixes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from authz_service import keys
from authz_service.cache import KeyCache
from authz_service.last_used import LastUsedRecorder


async def test_last_used_is_one_write_per_flush_and_survives_a_failed_write() -> None:
    writes: list[list[str]] = []
    failing = True

    async def write(ids: Iterable[str]) -> None:
        if failing:
            raise ConnectionError("down")
        writes.append(list(ids))

    recorder = LastUsedRecorder(interval_seconds=60)
    for _ in range(1000):
        recorder.touch("key_a")
    recorder.touch("key_b")
    assert await recorder.flush(write) == 0  # failed: kept for the next round
    assert recorder.pending() == 2
    failing = False
    assert await recorder.flush(write) == 2
    assert writes == [["key_a", "key_b"]]
    assert await recorder.flush(write) == 0 and writes == [["key_a", "key_b"]]


async def test_last_used_flushes_periodically_and_on_stop() -> None:
    writes: list[list[str]] = []

    async def write(ids: Iterable[str]) -> None:
        writes.append(list(ids))

    recorder = LastUsedRecorder(interval_seconds=0.05)
    task = asyncio.create_task(recorder.run(write))
    recorder.touch("key_a")
    await asyncio.sleep(0.12)
    recorder.touch("key_b")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert writes == [["key_a"], ["key_b"]]


def test_pending_ids_are_bounded() -> None:
    recorder = LastUsedRecorder(interval_seconds=60, max_pending=3)
    for i in range(10):
        recorder.touch(f"key_{i}")
    assert recorder.pending() == 3


def test_forget_and_clear_drop_entries_and_move_the_generation() -> None:
    cache: KeyCache[str] = KeyCache(size=10, ttl=60)
    cache.remember("a", "record-a")
    cache.remember("u", None)
    start = cache.generation
    cache.forget("a")
    cache.forget("u")
    assert cache.lookup("a") is KeyCache.MISS and cache.lookup("u") is KeyCache.MISS
    cache.remember("b", "record-b", generation=start)  # loaded before the change: not kept
    assert cache.lookup("b") is KeyCache.MISS
    cache.remember("b", "record-b", generation=cache.generation)
    cache.clear()
    assert cache.lookup("b") is KeyCache.MISS and cache.sizes() == (0, 0)


@pytest.mark.parametrize(
    ("environment", "prefix"), [("live", "sk_live"), ("test", "sk_test"), ("dev", "sk_dev")]
)
def test_prefix_for_environment(environment: str, prefix: str) -> None:
    assert keys.prefix_for(environment) == prefix
    assert keys.environment_of(keys.generate_key(prefix)) == environment


def test_prefix_for_unknown_environment() -> None:
    with pytest.raises(ValueError, match="unknown environment"):
        keys.prefix_for("prod")

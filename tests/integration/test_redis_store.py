"""The Lua script on a real Valkey agrees with the pure sliding-window maths."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest
import redis.asyncio as redis

from ratelimit_service.plan import counter_base, store_windows
from ratelimit_service.store import StoreWindow, store_from_url
from ratelimit_service.store.redis import RedisStore, window_args
from ratelimit_service.store.script_pipe import CommandTemplate
from ratelimit_service.windows import Decision, Window
from stack.redis import server_args
from tests.procs import Proc, free_port

WINDOWS = (Window("minute", 5), Window("hour", 8))


def windows_of(windows: tuple[Window, ...]) -> tuple[StoreWindow, ...]:
    return store_windows(counter_base("test", [("api_key", secrets.token_hex(4))]), windows, True)


def store(url: str) -> RedisStore:
    found = store_from_url(url, timeout=1.0)
    assert isinstance(found, RedisStore)
    return found


async def test_admits_up_to_the_limit_then_denies_without_counting(redis_url: str) -> None:
    rl = store(redis_url)
    specs = windows_of(WINDOWS)
    try:
        results = [await rl.apply(specs) for _ in range(7)]
        assert [r.allowed for r in results] == [True] * 5 + [False] * 2
        assert [r.states[0].remaining() for r in results[:5]] == [4, 3, 2, 1, 0]
        # Rejected requests used no quota: both windows still hold exactly 5.
        assert results[-1].states[0].cur == 5 and results[-1].states[1].cur == 5
        denied = Decision(False, results[-1].states)
        assert denied.blocking().window.unit == "minute"
        assert 1 <= denied.retry_after() <= 120
    finally:
        await rl.close()


async def test_all_windows_are_checked_and_keys_expire(redis_url: str) -> None:
    rl = store(redis_url)
    specs = windows_of((Window("minute", 100), Window("hour", 2)))
    client = redis.Redis.from_url(redis_url)
    try:
        assert (await rl.apply(specs)).allowed
        assert (await rl.apply(specs)).allowed
        denied = await rl.apply(specs)
        assert not denied.allowed
        assert Decision(False, denied.states).blocking().window.unit == "hour"
        assert denied.states[0].cur == 2  # the minute window was not charged either
        # One hash per window (bucket index + two counters), gone after two idle windows.
        assert await client.type(specs[1].key) == b"hash"
        ttl_ms = await client.pttl(specs[1].key)
        assert 0 < ttl_ms <= 2 * 3600 * 1000
        assert 0 < await client.pttl(specs[0].key) <= 2 * 60 * 1000
    finally:
        await client.aclose()
        await rl.close()


async def test_concurrent_hits_never_exceed_the_limit(redis_url: str) -> None:
    rl = store(redis_url)
    specs = windows_of(WINDOWS)
    try:
        results = await asyncio.gather(*(rl.apply(specs) for _ in range(40)))
        assert sum(r.allowed for r in results) == 5
    finally:
        await rl.close()


async def test_script_is_reloaded_after_script_flush(redis_url: str) -> None:
    rl = store(redis_url)
    try:
        assert (await rl.apply(windows_of(WINDOWS))).allowed
        await rl.client.script_flush()
        assert (await rl.apply(windows_of(WINDOWS))).allowed
    finally:
        await rl.close()


async def test_concurrent_calls_pipeline_and_survive_a_script_flush_and_a_dropped_connection(
    redis_url: str,
) -> None:
    """Calls made at once share one connection; after SCRIPT FLUSH (a restarted Redis lost its
    scripts) the script is loaded again and every call is decided exactly once; a connection
    killed by the server fails its calls (the failure mode answers) and the next call reconnects."""
    rl = store(redis_url)
    assert rl._pipe is not None  # redis:// takes the lean path
    specs = windows_of((Window("minute", 50),))
    raw = redis.from_url(redis_url)
    try:
        first = await asyncio.gather(*(rl.apply(specs) for _ in range(30)))
        await raw.script_flush()
        second = await asyncio.gather(*(rl.apply(specs) for _ in range(30)))
        allowed = [r.allowed for r in (*first, *second)]
        assert allowed.count(True) == 50 and allowed.count(False) == 10
        # Only our connection: other tests' services share this Redis.
        assert rl._pipe._protocol is not None and rl._pipe._protocol.transport is not None
        host, port = rl._pipe._protocol.transport.get_extra_info("sockname")[:2]
        await raw.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        after_kill = await asyncio.gather(*(rl.apply(specs) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, ConnectionError) or not r.allowed for r in after_kill), after_kill
        assert (await rl.apply(specs)).states[0].cur == 50  # reconnected; nothing more was charged
    finally:
        await raw.aclose()
        await rl.close()


@pytest.fixture
def private_valkey(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Valkey of our own with a password and a unix socket (the session one has neither)."""
    port, sock = free_port(), tmp_path / "valkey.sock"
    args = server_args(port, tmp_path, ["--unixsocket", str(sock), "--requirepass", "s3cret"])
    proc = Proc("valkey-private", args, tmp_path)
    proc.wait_port(port)
    yield port, sock
    proc.stop()


async def test_lean_connection_authenticates_selects_the_db_and_speaks_unix_sockets(
    private_valkey: tuple[int, Path],
) -> None:
    port, sock = private_valkey
    specs = windows_of((Window("minute", 2),))
    for url in (f"redis://:s3cret@127.0.0.1:{port}/3", f"unix://:s3cret@{sock}?db=2"):
        rl = store(url)
        try:
            assert rl._pipe is not None
            assert [(await rl.apply(specs)).allowed for _ in range(3)] == [True, True, False], url
        finally:
            await rl.close()
    raw = redis.from_url(f"redis://:s3cret@127.0.0.1:{port}/3")
    try:
        assert await raw.dbsize() == 1  # the counter went to the db the URL names
    finally:
        await raw.aclose()
    wrong = store(f"redis://:nope@127.0.0.1:{port}/0")
    try:
        with pytest.raises(Exception, match="WRONGPASS"):
            await wrong.apply(specs)
    finally:
        await wrong.close()


def test_a_packed_template_is_the_command_hiredis_would_pack() -> None:
    specs = windows_of((Window("minute", 5), Window("hour", 8, "sliding_log")))
    template = CommandTemplate("abc123", [s.key for s in specs], 4, window_args(specs))
    middle = ("", 3, "c", "token.1")
    full = ("EVALSHA", "abc123", 2, *(s.key for s in specs), *middle, *window_args(specs))
    assert template.pack(middle) == hiredis.pack_command(full)


async def test_a_stalled_redis_times_calls_out_on_time_and_their_late_replies_are_dropped(
    private_valkey: tuple[int, Path],
) -> None:
    """One timer serves every waiting call: each still fails at its own deadline, and replies that
    come after it are read and dropped, so the next call gets its own reply and not a stale one."""
    port, _ = private_valkey
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    rl = store_from_url(url, timeout=0.1)
    specs = windows_of((Window("minute", 100),))
    raw = redis.from_url(url)
    loop = asyncio.get_running_loop()
    try:
        assert (await rl.apply(specs)).allowed  # connected, script loaded
        await raw.execute_command("CLIENT", "PAUSE", 500, "ALL")
        started = loop.time()
        stalled = await asyncio.gather(*(rl.apply(specs) for _ in range(5)), return_exceptions=True)
        waited = loop.time() - started
        assert all(isinstance(r, TimeoutError) for r in stalled), stalled
        assert 0.09 <= waited < 0.35, waited
        await asyncio.sleep(0.6)  # the pause ends: Redis runs the 5 stalled calls and replies late
        after = await rl.apply(specs)
        state = after.states[0]
        # 1 + the 5 late ones + this one; a minute boundary during the test moves some to `prev`.
        assert after.allowed and state.prev + state.cur == 7, state
    finally:
        await raw.aclose()
        await rl.close()

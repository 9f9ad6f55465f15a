"""Redis store: every window of a request decided in one EVALSHA round trip."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as redis

from ratelimit_service.windows import Decision, Window, WindowState

SCRIPT = (Path(__file__).parent / "sliding_window.lua").read_text()


def window_key(subject: str, window: Window) -> str:
    # {subject} is the hash tag: all windows of one key land in one Redis Cluster slot.
    return f"rl:{{{subject}}}:{window.seconds}"


class RedisWindowStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        # register_script uses EVALSHA and reloads the script on NOSCRIPT.
        self._script = client.register_script(SCRIPT)

    @classmethod
    def from_url(cls, url: str) -> RedisWindowStore:
        return cls(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5))

    async def hit(self, subject: str, windows: tuple[Window, ...], hits: int = 1) -> Decision:
        args: list[int] = [hits]
        for window in windows:
            args += [window.limit, window.seconds]
        reply = await self._script(keys=[window_key(subject, w) for w in windows], args=args)
        states = tuple(
            WindowState(window, int(reply[3 * i + 1]), int(reply[3 * i + 2]), int(reply[3 * i + 3]))
            for i, window in enumerate(windows)
        )
        return Decision(bool(reply[0]), states, hits)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()

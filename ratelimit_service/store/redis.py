"""Redis store (single node, Sentinel or Cluster via redis-py asyncio): one EVALSHA per request.

windows.lua decides every window of the request atomically with Redis's clock. On Redis
Cluster, keys of one descriptor share a hash tag; a request whose descriptors land in
different slots runs one script per slot, in order, and stops charging at the first denial.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.crc import key_slot

from ratelimit_service.store.base import ALGORITHM_CODES, StoreResult, StoreWindow, decode, request_token

SCRIPT = (Path(__file__).parent / "windows.lua").read_text()
MAX_CONNECTIONS = 64  # per process; more in flight wait for a free connection


def script_args(windows: Sequence[StoreWindow], hits: int, peek: bool, now_ms: int | None) -> list:
    args: list = ["" if now_ms is None else now_ms, hits, "p" if peek else "c", request_token()]
    for spec in windows:
        w = spec.window
        args += [ALGORITHM_CODES[w.algorithm], w.limit, w.seconds * 1000, 1 if spec.enforced else 0]
    return args


class RedisStore:
    def __init__(self, client: redis.Redis | RedisCluster, cluster: bool = False) -> None:
        self.client = client
        self.cluster = cluster
        # register_script uses EVALSHA and loads the script again on NOSCRIPT.
        self._script = client.register_script(SCRIPT)
        self._ready = not cluster
        self._init_lock = asyncio.Lock()

    async def _initialize(self) -> None:
        # Many first calls at once would each (re)initialise redis-py's cluster client and close
        # connections still in use by the others ("Connection closed by server"): do it once.
        async with self._init_lock:
            if not self._ready:
                await self.client.initialize()
                self._ready = True

    async def apply(
        self, windows: Sequence[StoreWindow], hits: int = 1, *, peek: bool = False, now_ms: int | None = None
    ) -> StoreResult:
        if not self._ready:
            await self._initialize()
        if not self.cluster or len({key_slot(w.key.encode()) for w in windows}) <= 1:
            return await self._run(windows, hits, peek, now_ms)
        return await self._run_per_slot(windows, hits, peek, now_ms)

    async def _run(
        self, windows: Sequence[StoreWindow], hits: int, peek: bool, now_ms: int | None
    ) -> StoreResult:
        reply = await self._script(
            keys=[w.key for w in windows], args=script_args(windows, hits, peek, now_ms)
        )
        return decode(windows, reply)

    async def _run_per_slot(
        self, windows: Sequence[StoreWindow], hits: int, peek: bool, now_ms: int | None
    ) -> StoreResult:
        groups: dict[int, list[int]] = {}
        for i, spec in enumerate(windows):
            groups.setdefault(key_slot(spec.key.encode()), []).append(i)
        states: list = [None] * len(windows)
        fits = [False] * len(windows)
        allowed = True
        for indexes in groups.values():
            part = [windows[i] for i in indexes]
            # After a denial, later slots are only read: a rejected request charges nothing more.
            result = await self._run(part, hits, peek or not allowed, now_ms)
            allowed = allowed and result.allowed
            for j, i in enumerate(indexes):
                states[i], fits[i] = result.states[j], result.fits[j]
        return StoreResult(allowed, tuple(states), tuple(fits))

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    found = []
    for part in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        found.append((host or "127.0.0.1", int(port or default_port)))
    return found


def redis_store_from_url(url: str, timeout: float) -> RedisStore:
    """redis://, rediss://, unix://, redis+cluster://h:p[,h:p], redis+sentinel://h:p[,h:p]/service[/db]."""
    # No retries: a script whose reply was lost may have run, and running it again would charge
    # the request twice. A failed call gets the failure mode; the next one reconnects.
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    if parts.scheme in ("redis", "rediss", "unix"):
        # A burst larger than the pool waits (up to the timeout) instead of failing at once.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=timeout, **options
        )
        return RedisStore(redis.Redis(connection_pool=pool))
    if parts.scheme in ("redis+cluster", "rediss+cluster"):
        nodes = [ClusterNode(h, p) for h, p in _hosts(parts.netloc, 6379)]
        client = RedisCluster(
            startup_nodes=nodes,
            username=username,
            password=password,
            ssl=parts.scheme.startswith("rediss"),
            **options,
        )
        return RedisStore(client, cluster=True)
    if parts.scheme == "redis+sentinel":
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("redis+sentinel:// needs the service name: redis+sentinel://host:26379/mymaster")
        db = int(path[1]) if len(path) > 1 else 0
        sentinel = Sentinel(
            _hosts(parts.netloc, 26379), sentinel_kwargs={"socket_timeout": timeout}, **options
        )
        return RedisStore(sentinel.master_for(path[0], db=db, username=username, password=password))
    raise ValueError(f"unsupported scheme {parts.scheme!r}")

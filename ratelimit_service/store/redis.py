"""Redis store (single node, Sentinel or Cluster via redis-py asyncio): one EVALSHA per request.

windows.lua decides every window of the request atomically with Redis's clock. On Redis
Cluster, keys of one descriptor share a hash tag; a request whose descriptors land in
different slots runs one script per slot, in order, and stops charging at the first denial.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from common.redis_client import CLUSTER, client_from_url
from ratelimit_service.store.base import ALGORITHM_CODES, StoreResult, StoreWindow, decode, request_token
from ratelimit_service.store.script_pipe import CommandTemplate, ScriptPipe

SCRIPT = (Path(__file__).parent / "windows.lua").read_text()
MAX_CONNECTIONS = 64  # per process; more in flight wait for a free connection


MAX_TEMPLATES = 10_000  # packed commands remembered per window set; all forgotten when full


def request_args(hits: int, peek: bool, now_ms: int | None) -> tuple:
    """ARGV[1..4]: what changes from one request to the next."""
    return ("" if now_ms is None else now_ms, hits, "p" if peek else "c", request_token())


def window_args(windows: Sequence[StoreWindow]) -> tuple:
    """ARGV[5..]: what each window is, fixed for a window set."""
    args: list = []
    for spec in windows:
        w = spec.window
        args += [ALGORITHM_CODES[w.algorithm], w.limit, w.seconds * 1000, spec.flag()]
    return tuple(args)


def script_args(windows: Sequence[StoreWindow], hits: int, peek: bool, now_ms: int | None) -> list:
    return [*request_args(hits, peek, now_ms), *window_args(windows)]


class RedisStore:
    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        cluster: bool = False,
        cluster_deadline: float | None = None,
        pipe: ScriptPipe | None = None,
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.cluster_deadline = cluster_deadline  # seconds for a whole cluster call; None: unbounded
        # register_script uses EVALSHA and loads the script again on NOSCRIPT.
        self._script = client.register_script(SCRIPT)
        self._ready = not cluster
        self._init_lock = asyncio.Lock()
        self._refreshing: asyncio.Task | None = None  # cluster: the slot map refresh under way
        # Plain single node: decisions skip redis-py and pipeline on one connection.
        self._pipe = pipe
        # id(window tuple) → (that tuple, its packed command); the tuple held keeps the id unique.
        self._templates: dict[int, tuple[Sequence[StoreWindow], CommandTemplate]] = {}

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
        if self.cluster:
            return await self._apply_cluster(windows, hits, peek, now_ms)
        return await self._run(windows, hits, peek, now_ms)

    async def _apply_cluster(
        self, windows: Sequence[StoreWindow], hits: int, peek: bool, now_ms: int | None
    ) -> StoreResult:
        try:
            # During a failover redis-py pauses 0.25 s on CLUSTERDOWN and refreshes its slot map
            # after each failed call: bound the whole call so that the failure mode answers
            # before Envoy gives up on this service (0.25 s).
            async with asyncio.timeout(self.cluster_deadline):
                if not self._ready:
                    # Shielded: a caller out of time stops waiting, the refresh goes on (cancelled,
                    # it would drop every connection and leave the next call to start over).
                    await asyncio.shield(self._refresh())
                if len({key_slot(w.key.encode()) for w in windows}) <= 1:
                    return await self._run(windows, hits, peek, now_ms)
                return await self._run_per_slot(windows, hits, peek, now_ms)
        except Exception:
            # Dead node, moved slots, CLUSTERDOWN: the next call refreshes the slot map first (a
            # no-op when redis-py did not ask for one). No retry: the script may have run.
            self._ready = False
            raise

    def _refresh(self) -> asyncio.Task:
        """The slot map refresh under way, or a new one: one at a time, shared by all callers."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._initialize())
        return self._refreshing

    async def _run(
        self, windows: Sequence[StoreWindow], hits: int, peek: bool, now_ms: int | None
    ) -> StoreResult:
        if self._pipe is not None:
            packed = self._template(windows).pack(request_args(hits, peek, now_ms))
            reply = await self._pipe.run(packed)
        else:
            keys, args = [w.key for w in windows], script_args(windows, hits, peek, now_ms)
            reply = await self._script(keys=keys, args=args)
        return decode(windows, reply)

    def _template(self, windows: Sequence[StoreWindow]) -> CommandTemplate:
        """The packed command for a window set; remembered for the limiter's (long-lived) tuples."""
        assert self._pipe is not None
        remembered = self._templates.get(id(windows))
        if remembered is not None and remembered[0] is windows:
            return remembered[1]
        template = CommandTemplate(self._pipe.sha, [w.key for w in windows], 4, window_args(windows))
        if isinstance(windows, tuple):
            if len(self._templates) >= MAX_TEMPLATES:
                self._templates = {}
            self._templates[id(windows)] = (windows, template)
        return template

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
        if self._pipe is not None:
            await self._pipe.close()
        await self.client.aclose()


def redis_store_from_url(url: str, timeout: float) -> RedisStore:
    """redis://, rediss://, unix://, redis+cluster://h:p[,h:p], redis+sentinel://h:p[,h:p]/service[/db]."""
    # No retries (common.redis_client): a script whose reply was lost may have run, and running it
    # again would charge the request twice. A failed call gets the failure mode; the next reconnects.
    scheme = urlsplit(url).scheme
    client = client_from_url(url, timeout, MAX_CONNECTIONS)
    if scheme in CLUSTER:
        # MOVED hops, a NOSCRIPT reload or one script per slot fit in twice the store timeout,
        # still under Envoy's 0.25 s for the default 0.1 s.
        return RedisStore(client, cluster=True, cluster_deadline=2 * timeout)
    # TLS stays with redis-py; plain TCP and unix sockets take the lean hot path.
    pipe = ScriptPipe(url, SCRIPT, timeout) if scheme in ("redis", "unix") else None
    return RedisStore(client, pipe=pipe)

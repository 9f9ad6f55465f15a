"""One pipelined Redis connection for the hot path: EVALSHA in, replies out, in order.

redis-py spends ~90 µs of CPU per round trip outside Redis (connection pool, command objects,
response callbacks); inside a busy gRPC sidecar that was a third of the rate limiter's CPU.
This connection does only what the decision needs: every call writes its command at once on
the one socket (concurrent calls pipeline on their own, no pool) and replies are matched in
order. hiredis packs and parses; redis-py still parses the URL and serves everything else
(ping, usage peeks go through here too). Used for redis:// and unix:// URLs without TLS.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import Any, cast

import hiredis
from redis.connection import parse_url


class StoreConnectionError(ConnectionError):
    """The connection to Redis failed or was closed: the call may or may not have run."""


def _bulks(args: tuple) -> bytes:
    """RESP bulk strings of `args` (hiredis's packing without the array header)."""
    packed = hiredis.pack_command(args)
    return packed[packed.index(b"\r\n") + 2 :]


class CommandTemplate:
    """An EVALSHA whose keys and trailing arguments are fixed, packed once; `pack` fills the rest."""

    __slots__ = ("count", "head", "tail")

    def __init__(self, sha: str, keys: list[str], middle_count: int, tail: tuple) -> None:
        head = ("EVALSHA", sha, len(keys), *keys)
        self.head, self.tail = _bulks(head), _bulks(tail) if tail else b""
        self.count = len(head) + middle_count + len(tail)

    def pack(self, middle: tuple) -> bytes:
        return b"*%d\r\n%s%s%s" % (self.count, self.head, _bulks(middle), self.tail)


class _Protocol(asyncio.Protocol):
    """Replies are matched to callers in order; each caller waits until its deadline at most.

    One timer for the whole queue instead of a timeout per call: deadlines come in the order
    the calls were sent, so the timer only ever needs the oldest one still waiting.
    """

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.loop = asyncio.get_running_loop()
        self.waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self.expired = 0  # how many calls at the head of `waiting` already timed out
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.last_reply = self.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        self.last_reply = self.loop.time()
        while (reply := self.reader.gets()) is not False:
            _, future = self.waiting.popleft()
            if self.expired:
                self.expired -= 1
            if future.done():  # its caller timed out or went away; the reply still had to be read
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        while self.waiting:
            _, future = self.waiting.popleft()
            if not future.done():
                future.set_exception(StoreConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def send(self, packed: bytes, timeout: float) -> asyncio.Future[Any]:
        """Write one command; its future fails with TimeoutError if no reply came in `timeout`."""
        if self.lost or self.transport is None:
            raise StoreConnectionError("Redis connection closed")
        future: asyncio.Future[Any] = self.loop.create_future()
        deadline = self.loop.time() + timeout
        self.waiting.append((deadline, future))
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._expire)
        self.transport.write(packed)
        return future

    def _expire(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.expired < len(self.waiting):
            deadline, future = self.waiting[self.expired]
            if deadline > now:
                self.timer = self.loop.call_at(deadline, self._expire)
                return
            self.expired += 1
            if not future.done():
                future.set_exception(TimeoutError())

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()


class ScriptPipe:
    """Runs one Lua script by SHA over a single lazily (re)opened connection."""

    def __init__(self, url: str, script: str, timeout: float) -> None:
        self.options = parse_url(url)
        self.script, self.timeout = script, timeout
        self.sha = hashlib.sha1(script.encode()).hexdigest()  # what EVALSHA names it by
        self.stale_after = max(1.0, 10 * timeout)  # seconds without any reply: reconnect
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()

    async def evalsha(self, keys: list[str], args: list[Any]) -> Any:
        return await self.run(hiredis.pack_command(("EVALSHA", self.sha, len(keys), *keys, *args)))

    async def run(self, packed: bytes) -> Any:
        """Run a packed EVALSHA of this script (see CommandTemplate), loading the script if needed."""
        try:
            return await self._call(packed)
        except hiredis.ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis restarted or flushed its scripts: this call did not run, so running it again
        # after loading the script cannot count it twice.
        await self._call(hiredis.pack_command(("SCRIPT", "LOAD", self.script)))
        return await self._call(packed)

    async def _call(self, packed: bytes) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connected()
        try:
            return await protocol.send(packed, self.timeout)
        except TimeoutError:
            # One slow reply is not a broken connection: its caller gets the failure mode, the
            # reply is read and dropped when it comes, and the calls behind it are unaffected.
            # A connection that has not answered anything for a long time is given up.
            if asyncio.get_running_loop().time() - protocol.last_reply > self.stale_after:
                protocol.close()
            raise

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.lost:
            return protocol
        async with self._connecting:
            if self._protocol is None or self._protocol.lost:
                self._protocol = await self._connect()
            return self._protocol

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        opts = self.options
        try:
            async with asyncio.timeout(self.timeout):
                if "path" in opts:
                    _, protocol = await loop.create_unix_connection(_Protocol, opts["path"])
                else:
                    host, port = opts.get("host", "127.0.0.1"), opts.get("port", 6379)
                    _, protocol = await loop.create_connection(_Protocol, host, port)
                try:
                    for command in self._handshake():
                        await protocol.send(hiredis.pack_command(command), self.timeout)
                except BaseException:
                    protocol.close()
                    raise
        except OSError as exc:
            raise StoreConnectionError(f"cannot connect to Redis: {exc}") from None
        return protocol

    def _handshake(self) -> list[tuple]:
        opts, commands = self.options, []
        if opts.get("password"):
            user = opts.get("username")
            commands.append(("AUTH", user, opts["password"]) if user else ("AUTH", opts["password"]))
        if opts.get("db"):
            commands.append(("SELECT", opts["db"]))
        return commands

    async def close(self) -> None:
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

"""Coalesce concurrent store calls into batches: one round trip carries every call that arrived
while the previous ones were on the wire.

At c=1 a call goes out at once, alone (no added latency). Under load, calls queue behind the
`max_in_flight` batches already sent and leave together: the socket write, the read wake-up and
the client library's per-call work are paid once per batch instead of once per call, which is
most of what a Redis round trip costs a Python process. Pure asyncio: the sender is injected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Call = TypeVar("Call")
Reply = TypeVar("Reply")
# One reply or the exception for that call, in order.
SendBatch = Callable[[list[Call]], Awaitable[Sequence[Reply | BaseException]]]


class Coalescer(Generic[Call, Reply]):
    def __init__(self, send: SendBatch, max_in_flight: int = 2, max_batch: int = 64) -> None:
        self._send = send
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._queue: list[tuple[Call, asyncio.Future[Reply]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # sent so far (tests, metrics)
        self.calls = 0

    async def submit(self, call: Call) -> Reply:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue.append((call, future))
        if self._in_flight < self._max_in_flight:
            self._start_batch()
        return await future

    def _start_batch(self) -> None:
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[tuple[Call, asyncio.Future[Reply]]]) -> None:
        self.batches += 1
        self.calls += len(batch)
        try:
            replies: Sequence[Reply | BaseException] = await self._send([call for call, _ in batch])
        except Exception as exc:  # the whole round trip failed: every call in it did
            replies = [exc] * len(batch)
        except asyncio.CancelledError:  # shutting down: nobody waits forever
            for _, future in batch:
                future.cancel()
            raise
        finally:
            self._in_flight -= 1
            if self._queue and self._in_flight < self._max_in_flight:
                self._start_batch()
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller gave up (cancelled: Envoy's timeout)
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)

"""Coalescer (ratelimit_service.store.coalesce): batching of concurrent store calls, pure asyncio."""

from __future__ import annotations

import asyncio

import pytest

from ratelimit_service.store.coalesce import Coalescer


class Sender:
    """Answers each call with its double after `delay`; remembers the batches it got."""

    def __init__(self, delay: float = 0.01, fail_on: int | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.batches: list[list[int]] = []

    async def __call__(self, calls: list[int]) -> list[int | BaseException]:
        self.batches.append(calls)
        await asyncio.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in calls:
            raise ConnectionError("store down")
        return [ValueError(c) if c < 0 else c * 2 for c in calls]


async def test_a_lone_call_goes_out_at_once_and_alone() -> None:
    sender = Sender()
    assert await Coalescer(sender).submit(21) == 42
    assert sender.batches == [[21]]


async def test_calls_arriving_while_the_wire_is_busy_share_one_batch() -> None:
    sender = Sender()
    coalescer: Coalescer[int, int] = Coalescer(sender, max_in_flight=1)
    replies = await asyncio.gather(*(coalescer.submit(i) for i in range(10)))
    assert replies == [i * 2 for i in range(10)]  # every caller gets its own reply
    assert sender.batches[0] == [0] and sorted(c for b in sender.batches for c in b) == list(range(10))
    assert len(sender.batches) == 2  # the first alone, the nine that queued behind it together


async def test_batches_respect_the_size_cap_and_in_flight_limit() -> None:
    sender = Sender()
    coalescer: Coalescer[int, int] = Coalescer(sender, max_in_flight=2, max_batch=3)
    await asyncio.gather(*(coalescer.submit(i) for i in range(20)))
    assert max(len(b) for b in sender.batches) <= 3
    assert coalescer.calls == 20 and coalescer.batches == len(sender.batches)


async def test_one_failed_call_fails_alone_and_a_failed_round_trip_fails_its_batch() -> None:
    sender = Sender(fail_on=7)
    coalescer: Coalescer[int, int] = Coalescer(sender, max_in_flight=1)
    with pytest.raises(ValueError):
        await coalescer.submit(-1)
    results = await asyncio.gather(*(coalescer.submit(i) for i in (5, 6, 7)), return_exceptions=True)
    assert results[0] == 10 or isinstance(results[0], ConnectionError)
    assert isinstance(results[2], ConnectionError)
    assert await coalescer.submit(1) == 2  # the next batch works again


async def test_a_caller_that_gives_up_does_not_break_the_others() -> None:
    sender = Sender(delay=0.05)
    coalescer: Coalescer[int, int] = Coalescer(sender, max_in_flight=1)
    impatient = asyncio.ensure_future(coalescer.submit(1))
    patient = asyncio.ensure_future(coalescer.submit(2))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == 4

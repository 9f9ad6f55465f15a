"""Run a service's main coroutine on uvloop (default) or the stock asyncio loop.

uvloop cuts the event loop's own share of a sidecar's CPU (socket reads and writes, wake-ups),
which is most of what a gRPC sidecar spends besides gRPC itself; `EVENT_LOOP=asyncio` switches
it off (benchmarks compare the two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from common.settings import env_default

T = TypeVar("T")
EVENT_LOOP_ENV = "EVENT_LOOP"


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    if name != "uvloop":
        raise ValueError(f"{EVENT_LOOP_ENV} must be uvloop or asyncio, got {name!r}")
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=loop_factory(env_default(EVENT_LOOP_ENV, "uvloop"))) as runner:
        return runner.run(main)

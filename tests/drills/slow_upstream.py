"""A stand-in inference upstream for the slow-client drills: answers at once or hangs on demand."""

from __future__ import annotations

import asyncio
import time

from tests.stub_upstream import StubUpstream


class SlowUpstream(StubUpstream):
    """Stand-in for the inference adapter on its own event loop thread. /ready always answers at
    once (so health checks pass); /v1/ answers at once, or while `slow` only after `hang_s`."""

    def __init__(self, hang_s: float) -> None:
        self.hang_s = hang_s
        self.slow = False
        self.arrived = 0  # /v1/ requests received
        super().__init__()

    async def answer(self, path: str, body: bytes) -> tuple[int, bytes, bytes]:
        if path.startswith("/v1/"):
            self.arrived += 1
            started = time.monotonic()
            while self.slow and time.monotonic() - started < self.hang_s:
                await asyncio.sleep(0.05)
        return 200, b"", b'{"embedding": [0.0]}'

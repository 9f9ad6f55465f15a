"""A stand-in inference upstream for the slow-client drills: answers at once or hangs on demand."""

from __future__ import annotations

import asyncio
import threading
import time


class SlowUpstream:
    """Stand-in for the inference adapter on its own event loop thread. /ready always answers at
    once (so health checks pass); /v1/ answers at once, or while `slow` only after `hang_s`."""

    def __init__(self, hang_s: float) -> None:
        self.hang_s = hang_s
        self.slow = False
        self.arrived = 0  # /v1/ requests received
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").lower().split("\r\n")
                length = next((int(x.split(":")[1]) for x in lines if x.startswith("content-length:")), 0)
                await reader.readexactly(length)
                if lines[0].split()[1].startswith("/v1/"):
                    self.arrived += 1
                    started = time.monotonic()
                    while self.slow and time.monotonic() - started < self.hang_s:
                        await asyncio.sleep(0.05)
                body = b'{"embedding": [0.0]}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
                writer.write(b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

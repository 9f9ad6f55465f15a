"""An HTTP/1.1 upstream stub on its own event loop thread (keep-alive, Content-Length bodies):
subclasses say how to answer each request; the stand-ins for the inference adapter build on it."""

from __future__ import annotations

import asyncio
import threading


class StubUpstream:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def answer(self, path: str, body: bytes) -> tuple[int, bytes, bytes]:
        """(status, extra header lines each ending in CRLF, JSON body) for a request to `path`."""
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").lower().split("\r\n")
                length = next((int(x.split(":")[1]) for x in lines if x.startswith("content-length:")), 0)
                body = await reader.readexactly(length)
                status, extra, reply = await self.answer(lines[0].split()[1], body)
                writer.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n%s" % (status, extra))
                writer.write(b"content-length: %d\r\n\r\n%s" % (len(reply), reply))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

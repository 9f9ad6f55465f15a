"""Run the FastAPI app (http.py) with uvicorn on the gRPC server's event loop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from ratelimit_service.http import create_app
from ratelimit_service.limiter import Limiter


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gRPC app owns SIGTERM/SIGINT and stops this server itself.
        yield


class HttpServer:
    def __init__(self, limiter: Limiter, sock: socket.socket) -> None:
        config = uvicorn.Config(create_app(limiter), log_level="warning", access_log=False, lifespan="off")
        self.server = _Server(config)
        self.sock = sock

    async def serve(self) -> None:
        await self.server.serve(sockets=[self.sock])

    async def stop(self) -> None:
        self.server.should_exit = True

"""Run a grpc.aio server with standard health checking and a graceful SIGTERM drain."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)

AddServicer = Callable[[grpc.aio.Server], None]


class GrpcApp:
    """A gRPC server plus its health servicer, so the app can flip serving status."""

    def __init__(self, port: int, host: str = "127.0.0.1", service_names: Iterable[str] = ()) -> None:
        # Compression off and large concurrency: Envoy multiplexes many calls per connection.
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = ["", *service_names]
        self.bound_port = self.server.add_insecure_port(f"{host}:{port}")

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self.service_names:
            await self.health.set(name, status)

    async def run(
        self,
        on_start: Callable[[], Awaitable[None]] | None = None,
        on_stop: Callable[[], Awaitable[None]] | None = None,
        grace_seconds: float = 5.0,
    ) -> None:
        """Serve until SIGTERM/SIGINT, then report NOT_SERVING and drain in-flight calls."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.set_serving(False)
        await self.server.start()
        try:
            if on_start is not None:
                await on_start()
            await stop.wait()
        finally:
            log.info("shutting down: draining for up to %.0fs", grace_seconds)
            await self.set_serving(False)
            await self.server.stop(grace_seconds)
            if on_stop is not None:
                await on_stop()

"""Run a grpc.aio server with standard health checking and a graceful SIGTERM drain."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.drain import DrainTracker
from common.settings import env_default

log = logging.getLogger(__name__)

AddServicer = Callable[[grpc.aio.Server], None]
# After SIGTERM: keep serving (reporting NOT_SERVING) until the load balancers marked us down,
# at most this long; then stop taking calls and give in-flight ones GRACE_S to finish.
DRAIN_ENV = "GRPC_DRAIN_SECONDS"
DEFAULT_DRAIN_S = 5.0
GRACE_S = 5.0
# Envoy needs a moment after its health check failed to take the host out of every worker.
SETTLE_S = 0.2


class WatchedHealth(health.aio.HealthServicer):
    """The standard health servicer, remembering who asked and what they were told."""

    def __init__(self, tracker: DrainTracker) -> None:
        super().__init__()
        self.tracker = tracker

    async def Check(self, request, context):  # type: ignore[no-untyped-def,override]
        response = await super().Check(request, context)
        if response is not None:
            serving = response.status == health_pb2.HealthCheckResponse.SERVING
            self.tracker.checked(context.peer(), serving, asyncio.get_running_loop().time())
        return response


class GrpcApp:
    """A gRPC server plus its health servicer, so the app can flip serving status."""

    def __init__(self, port: int, host: str = "127.0.0.1", service_names: Iterable[str] = ()) -> None:
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self.drain = DrainTracker()
        self.health = WatchedHealth(self.drain)
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
        drain_seconds: float | None = None,
    ) -> None:
        """Serve until SIGTERM/SIGINT, then report NOT_SERVING, drain, and finish in-flight calls.

        A second signal skips the rest of the drain.
        """
        if drain_seconds is None:
            drain_seconds = env_default(DRAIN_ENV, DEFAULT_DRAIN_S, float)
        stop, hurry = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            (hurry if stop.is_set() else stop).set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await self.set_serving(False)
        await self.server.start()
        try:
            if on_start is not None:
                await on_start()
            await stop.wait()
        finally:
            await self.set_serving(False)
            await self._drain(drain_seconds, hurry)
            log.info("stopping: in-flight calls get up to %.0fs", GRACE_S)
            await self.server.stop(GRACE_S)
            if on_stop is not None:
                await on_stop()

    async def _drain(self, limit: float, hurry: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self.drain.begin()
        started = loop.time()
        watchers = self.drain.watchers(started)
        if not watchers or limit <= 0:
            return
        log.info(
            "draining: NOT_SERVING until %d health checker(s) mark us down (max %.0fs)", len(watchers), limit
        )
        while not hurry.is_set() and loop.time() - started < limit:
            if self.drain.done(loop.time()):
                await asyncio.sleep(SETTLE_S)
                log.info("drained in %.1fs", loop.time() - started)
                return
            await asyncio.sleep(0.05)
        waited = loop.time() - started
        log.warning("drain ended after %.1fs before every health checker marked us down", waited)

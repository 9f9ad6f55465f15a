"""`python -m ratelimit_service`: the sliding-window rate-limit gRPC service. See --help."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from envoy.service.ratelimit.v3 import rls_pb2_grpc

from common.grpc_serving import GrpcApp
from common.settings import add_option, positive_int
from ratelimit_service.redis_store import RedisWindowStore
from ratelimit_service.service import RateLimitService
from ratelimit_service.windows import Window

log = logging.getLogger("ratelimit_service")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ratelimit_service",
        description="Sliding-window rate limits for Envoy's ratelimit filter (gRPC). Every window of "
        "a request is decided atomically in one Redis round trip; rejected requests use no quota.",
    )
    add_option(parser, "--host", "RATELIMIT_HOST", "127.0.0.1", "address to bind the gRPC server to")
    add_option(
        parser, "--grpc-port", "RATELIMIT_GRPC_PORT", 9011, "gRPC port (ShouldRateLimit + health)", int
    )
    add_option(parser, "--redis-url", "REDIS_URL", "redis://127.0.0.1:6390/0", "Redis URL for the counters")
    add_option(
        parser, "--rate-limit-minute", "RATE_LIMIT_MINUTE", 60, "requests per minute per key", positive_int
    )
    add_option(
        parser, "--rate-limit-hour", "RATE_LIMIT_HOUR", 1000, "requests per hour per key", positive_int
    )
    add_option(parser, "--log-level", "LOG_LEVEL", "INFO", "logging level")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    store = RedisWindowStore.from_url(args.redis_url)
    windows = (Window("minute", args.rate_limit_minute), Window("hour", args.rate_limit_hour))
    app = GrpcApp(args.grpc_port, args.host, ["envoy.service.ratelimit.v3.RateLimitService"])
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(RateLimitService(store, windows), app.server)

    async def on_start() -> None:
        log.info("gRPC listening on %s:%d; limits %s", args.host, app.bound_port, windows)
        # Serving does not wait for Redis: with Redis down, the filter's failure mode applies.
        await app.set_serving(True)

    await app.run(on_start, store.close)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="ratelimit %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        raise SystemExit(f"ratelimit_service: {exc}") from None


if __name__ == "__main__":
    main()

"""`python -m authz_service`: the ext_authz gRPC service. See --help."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from envoy.service.auth.v3 import external_auth_pb2_grpc

from authz_service import fused, keys, metrics
from authz_service.cache import KeyCache
from authz_service.invalidation import InvalidationListener
from authz_service.last_used import LastUsedRecorder
from authz_service.plans import Plans
from authz_service.replay import MemoryReplayGuard, ReplayGuard, guard_from_url
from authz_service.sealing import SecretBox
from authz_service.service import AuthorizationService
from authz_service.settings import (
    OneLineParser,
    add_database_option,
    add_plan_options,
    add_signing_option,
    box_from_args,
    fail,
    plans_from_args,
)
from authz_service.store import NOTIFY_CHANNEL, PostgresKeyStore
from common import event_loop
from common.grpc_serving import GrpcApp
from common.logs import one_line_errors
from common.settings import add_option, positive_int
from ratelimit_service.embedded import ConfigError, config_watcher

log = logging.getLogger("authz_service")

PROG = "python -m authz_service"
LISTEN_READY_TIMEOUT_S = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog=PROG,
        description="API-key authentication for Envoy's ext_authz filter (gRPC). Keys are looked up "
        "by SHA-256 in Postgres and cached; Postgres NOTIFY drops changed keys from every replica's "
        "cache. On start a dev key is created (or TEST_API_KEY is registered) and printed.",
    )
    add_option(parser, "--host", "AUTHZ_HOST", "127.0.0.1", "address to bind the gRPC server to")
    add_option(
        parser, "--grpc-port", "AUTHZ_GRPC_PORT", 9001, "gRPC port (Authorization/Check + health)", int
    )
    add_database_option(parser)
    add_option(
        parser,
        "--dev-key",
        "TEST_API_KEY",
        "",
        "register this key as the dev key instead of a new random one",
    )
    add_option(parser, "--cache-ttl", "AUTHZ_CACHE_TTL", 30.0, "seconds a looked-up key stays cached", float)
    add_option(parser, "--cache-size", "AUTHZ_CACHE_SIZE", 10_000, "max cached keys", positive_int)
    add_option(
        parser,
        "--negative-cache-ttl",
        "AUTHZ_NEGATIVE_CACHE_TTL",
        5.0,
        "seconds an unknown key is remembered as unknown",
        float,
    )
    add_option(
        parser,
        "--negative-cache-size",
        "AUTHZ_NEGATIVE_CACHE_SIZE",
        10_000,
        "max remembered unknown keys (kept apart: they cannot evict known keys)",
        positive_int,
    )
    add_option(
        parser,
        "--lookup-timeout",
        "AUTHZ_LOOKUP_TIMEOUT",
        0.2,
        "seconds a cache miss may wait for Postgres before answering 503 (keep below Envoy's 0.25 s)",
        float,
    )
    add_option(
        parser,
        "--last-used-interval",
        "AUTHZ_LAST_USED_INTERVAL",
        10.0,
        "seconds between batched last_used_at updates",
        float,
    )
    add_option(parser, "--metrics-port", "AUTHZ_METRICS_PORT", 0, "Prometheus /metrics port (0: off)", int)
    add_plan_options(parser)
    add_signing_option(parser)
    fused.add_fused_options(parser)
    add_option(parser, "--log-level", "LOG_LEVEL", "INFO", "logging level")
    parser.add_argument("--no-dev-key", action="store_true", help="do not create or print a dev key")
    return parser.parse_args(argv)


async def ensure_dev_key(store: PostgresKeyStore, key: str, plans: Plans) -> str:
    """Register `key` (or a new sk_dev_ key) and return the plaintext to print once."""
    key = key or keys.generate_key("sk_dev")
    await store.add_key(key, name="dev", owner="dev_user", plan=plans.default_plan)
    return key


async def serve(
    args: argparse.Namespace,
    plans: Plans,
    limits: fused.FusedLimits | None = None,
    box: SecretBox | None = None,
    replay: ReplayGuard | None = None,
) -> None:
    cache: KeyCache = KeyCache(
        args.cache_size, args.cache_ttl, args.negative_cache_size, args.negative_cache_ttl
    )
    last_used = LastUsedRecorder(args.last_used_interval)
    replay = replay or MemoryReplayGuard()
    service = AuthorizationService(cache, plans, last_used, args.lookup_timeout, box, replay)
    service.limits = limits
    app = GrpcApp(args.grpc_port, args.host, ["envoy.service.auth.v3.Authorization"])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(service, app.server)
    if limits is not None:
        fused.add_rate_limit_service(limits, app.server)  # the token charges after the response
    metrics.CACHED_KEYS.set_function(lambda: cache.sizes()[0])
    store: PostgresKeyStore | None = None
    background: list[asyncio.Task[None]] = []

    def forget(key_hash: str) -> None:
        metrics.INVALIDATIONS.inc()
        cache.forget(key_hash)

    async def on_start() -> None:
        nonlocal store
        log.info("gRPC listening on %s:%d; connecting to the key store", args.host, app.bound_port)
        store = await PostgresKeyStore.connect(args.database_url)
        listener = InvalidationListener(args.database_url, NOTIFY_CHANNEL, forget, cache.clear)
        background.append(asyncio.create_task(listener.run()))
        background.append(asyncio.create_task(last_used.run(store.touch_last_used)))
        # Serve only once changes are heard: a replica must never cache a revoked key unnoticed.
        await asyncio.wait_for(listener.listening.wait(), LISTEN_READY_TIMEOUT_S)
        if not args.no_dev_key:
            dev_key = await ensure_dev_key(store, args.dev_key, plans)
            # Printed on purpose (seed: "The gateway will print your API key on startup").
            print(f"Dev API key: {dev_key}", flush=True)
        service.store = store
        if limits is not None:
            watcher = config_watcher(args.ratelimit_config, limits.limiter)
            if watcher is not None:
                limits.watch(watcher)
            log.info("fused mode: this service decides the rate limits too")
        await app.set_serving(True)
        log.info("ready (plans: %s)", ", ".join(plans.names()))

    async def on_stop() -> None:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if store is not None:
            await store.close()
        await replay.close()
        if limits is not None:
            await limits.close()

    await app.run(on_start, on_stop)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plans = plans_from_args(args, PROG)
    box = box_from_args(args, PROG)
    if args.dev_key and not keys.is_well_formed(args.dev_key):
        fail(PROG, "TEST_API_KEY is malformed: expected sk_live_/sk_test_/sk_dev_ + 32+ url-safe characters")
    logging.basicConfig(
        level=args.log_level.upper(), format="authz %(levelname)s %(message)s", stream=sys.stderr
    )
    one_line_errors("asyncpg.pool")
    try:
        limits = fused.from_args(args) if args.fused_limits else None
    except (ConfigError, ValueError) as exc:  # a bad --ratelimit-config or --redis-url
        fail(PROG, f"fused limits: {exc}")
    try:
        replay = guard_from_url(args.redis_url)  # each signature once, across replicas (signing keys)
    except ValueError as exc:
        fail(PROG, f"--redis-url: {exc}")
    try:
        if args.metrics_port:
            metrics.serve(args.metrics_port, args.host)
        event_loop.run(serve(args, plans, limits, box, replay))
    except OSError as exc:
        raise SystemExit(f"authz_service: {exc}") from None


if __name__ == "__main__":
    main()

"""`python -m ratelimit_service`: the rate-limit service for Envoy's ratelimit filter. See --help."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from common import event_loop
from common.grpc_serving import GrpcApp
from common.settings import add_option, env_default, non_negative_int, positive_float, positive_int
from ratelimit_service.config import DEFAULT_CONFIG, ConfigError, RateLimitConfig, load_config
from ratelimit_service.config.model import with_unit_limits
from ratelimit_service.limiter import Limiter
from ratelimit_service.local_cache import OverLimitCache
from ratelimit_service.reload import ConfigWatcher
from ratelimit_service.runtime import merge_domains, near_limit_ratio, runtime_config_dir
from ratelimit_service.service import RateLimitService, add_to_server
from ratelimit_service.store import store_from_url

log = logging.getLogger("ratelimit_service")
DEFAULT_MINUTE, DEFAULT_HOUR = 60, 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ratelimit_service",
        description="Rate limits for Envoy's ratelimit filter (gRPC), configured in envoyproxy/ratelimit's "
        "YAML format plus sliding windows (docs/ratelimit.md). Every window of a request is decided "
        "atomically in one store round trip; rejected requests use no quota.",
    )
    add_option(
        parser, "--host", "RATELIMIT_HOST", "127.0.0.1", "address to bind the gRPC and HTTP servers to"
    )
    add_option(
        parser, "--grpc-port", "RATELIMIT_GRPC_PORT", 9011, "gRPC port (ShouldRateLimit + health)", int
    )
    add_option(
        parser, "--http-port", "RATELIMIT_HTTP_PORT", 0,
        "HTTP port for GET /v1/usage, /metrics and /health (0: no HTTP server)", non_negative_int,
    )  # fmt: skip
    add_option(
        parser, "--config", "RATELIMIT_CONFIG", "built-in ratelimit_service/config/default.yaml",
        "rate-limit config (envoyproxy/ratelimit's format): a YAML file or a folder of them, reloaded on "
        "change; unset: RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY when set, else built-in", Path,
    )  # fmt: skip
    add_option(
        parser, "--redis-url", "REDIS_URL", "redis://127.0.0.1:6390/0",
        "counter store: redis://, rediss://, unix://, redis+cluster://h:p[,h:p], "
        "redis+sentinel://h:p[,h:p]/service, or memory:// (this process only)",
    )  # fmt: skip
    add_option(
        parser, "--store-timeout", "RATELIMIT_STORE_TIMEOUT", 0.1, "store timeout, seconds", positive_float
    )
    # Not add_option: None tells "not given", which a file given with --config must not meet.
    for flag, env, unit, default in (
        ("--rate-limit-minute", "RATE_LIMIT_MINUTE", "minute", DEFAULT_MINUTE),
        ("--rate-limit-hour", "RATE_LIMIT_HOUR", "hour", DEFAULT_HOUR),
    ):
        parser.add_argument(
            flag,
            default=env_default(env, None, positive_int),
            type=positive_int,
            help=f"requests per {unit} per key in the built-in config (env {env}, default: {default})",
        )
    add_option(
        parser, "--reload-interval", "RATELIMIT_RELOAD_INTERVAL", 2.0,
        "seconds between checks of the config files for changes", positive_float,
    )  # fmt: skip
    add_option(
        parser, "--local-cache-size", "RATELIMIT_LOCAL_CACHE_SIZE", 100_000,
        "over-limit windows remembered in memory, answered without the store (0: off)", non_negative_int,
    )  # fmt: skip
    add_option(parser, "--log-level", "LOG_LEVEL", "INFO", "logging level")
    args = parser.parse_args(argv)
    args.builtin_config = str(args.config).startswith("built-in ")
    args.merge_domains = merge_domains()
    try:
        args.near_limit_ratio = near_limit_ratio()
    except ValueError as exc:
        parser.error(str(exc))
    runtime_dir = runtime_config_dir() if args.builtin_config else None
    if runtime_dir is not None:  # envoyproxy/ratelimit's RUNTIME_ROOT/RUNTIME_SUBDIRECTORY layout
        args.builtin_config, args.config = False, runtime_dir
    if args.builtin_config:
        args.config = DEFAULT_CONFIG
        return args
    # With a config file the limits are in the file: flags are a mistake, env vars (often set
    # for the whole deployment) are ignored with a warning.
    given = [a.split("=")[0] for a in (sys.argv[1:] if argv is None else argv)]
    if "--rate-limit-minute" in given or "--rate-limit-hour" in given:
        parser.error(
            f"--rate-limit-minute/--rate-limit-hour apply to the built-in config; set limits in {args.config}"
        )
    args.ignored_limit_env = args.rate_limit_minute is not None or args.rate_limit_hour is not None
    return args


def config_transform(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The built-in config with the --rate-limit-* values; any other config as it is."""
    if not args.builtin_config:
        return lambda config: config
    limits = {
        "minute": args.rate_limit_minute or DEFAULT_MINUTE,
        "hour": args.rate_limit_hour or DEFAULT_HOUR,
    }
    return lambda config: with_unit_limits(config, limits)


def redacted(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


def bind_http(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(args: argparse.Namespace, config: RateLimitConfig) -> None:
    from ratelimit_service.http_server import HttpServer  # FastAPI/uvicorn: only with an HTTP port

    store = store_from_url(args.redis_url, args.store_timeout)
    limiter = Limiter(
        config,
        store,
        OverLimitCache(max_entries=args.local_cache_size),
        near_limit_ratio=args.near_limit_ratio,
    )
    http_sock = bind_http(args.host, args.http_port) if args.http_port else None
    try:
        app = GrpcApp(args.grpc_port, args.host, ["envoy.service.ratelimit.v3.RateLimitService"])
    except RuntimeError as exc:  # grpc reports a busy port this way
        raise OSError(f"cannot listen on {args.host}:{args.grpc_port}: {exc}") from None
    add_to_server(RateLimitService(limiter), app.server)
    watcher = ConfigWatcher(args.config, limiter.set_config, config_transform(args), args.merge_domains)
    http = HttpServer(limiter, http_sock) if http_sock is not None else None
    tasks: list[asyncio.Task] = []

    async def on_start() -> None:
        tasks.append(asyncio.create_task(watcher.run(args.reload_interval)))
        if http is not None:
            tasks.append(asyncio.create_task(http.serve()))
        where = f"HTTP on {args.host}:{args.http_port}" if http is not None else "no HTTP port"
        domains = ", ".join(config.domains)
        log.info(
            "gRPC on %s:%d, %s; config %s (domains: %s); store %s",
            args.host, app.bound_port, where, args.config, domains, redacted(args.redis_url),
        )  # fmt: skip
        # Serving does not wait for the store: with it down, the configured failure mode applies.
        await app.set_serving(True)

    async def on_stop() -> None:
        if http is not None:
            await http.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()

    await app.run(on_start, on_stop)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="ratelimit %(levelname)s %(message)s", stream=sys.stderr
    )
    if getattr(args, "ignored_limit_env", False):
        log.warning("RATE_LIMIT_MINUTE/RATE_LIMIT_HOUR ignored: the limits come from %s", args.config)
    try:
        config = config_transform(args)(load_config(args.config, args.merge_domains))
    except ConfigError as exc:
        print(f"ratelimit_service: error: bad config: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        event_loop.run(serve(args, config))
    except ValueError as exc:  # a store URL we cannot use
        print(f"ratelimit_service: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        raise SystemExit(f"ratelimit_service: {exc}") from None


if __name__ == "__main__":
    main()

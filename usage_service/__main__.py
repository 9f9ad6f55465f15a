"""`python -m usage_service`: the usage-record writer and its HTTP port. See --help."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import uvicorn

from common import event_loop
from common.logs import one_line_errors
from common.settings import add_option, non_negative_int, positive_float, positive_int
from usage_service.charge import TokenCharger
from usage_service.http import create_app
from usage_service.tail import LogTail
from usage_service.writer import Writer

log = logging.getLogger("usage_service")
PROG = "python -m usage_service"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5442/postgres"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Usage records (docs/usage.md): tails Envoy's usage access log (GATEWAY_USAGE_LOG) and "
        "stores requests, tokens, client/server errors and rate-limited requests per key, route and hour "
        "in Postgres, exactly once; serves GET /v1/usage/history and the admin export GET /admin/usage.",
    )
    add_option(
        parser, "--host", "USAGE_HOST", "127.0.0.1", "address to bind the HTTP port to (keep it private)"
    )
    add_option(
        parser, "--http-port", "USAGE_HTTP_PORT", 9021, "HTTP port (history, export, /metrics, /health)", int
    )
    add_option(parser, "--log", "GATEWAY_USAGE_LOG", "", "the usage log Envoy writes (JSON lines)", Path)
    add_option(
        parser, "--source", "USAGE_SOURCE", "",
        "name of this log in the position table (default: the --log path); one writer per source",
    )  # fmt: skip
    add_option(parser, "--database-url", "DATABASE_URL", DEFAULT_DATABASE_URL, "Postgres DSN")
    add_option(
        parser, "--admin-token", "AUTHZ_ADMIN_TOKEN", "", "token GET /admin/usage requires (X-Admin-Token)"
    )
    add_option(
        parser, "--interval", "USAGE_INTERVAL", 0.5, "seconds between looks at the log", positive_float
    )
    add_option(
        parser, "--hourly-retention-days", "USAGE_HOURLY_RETENTION_DAYS", 90,
        "hourly rows older than this are deleted (daily rows are kept)", positive_int,
    )  # fmt: skip
    add_option(
        parser, "--rotation-settle", "USAGE_ROTATION_SETTLE", 5.0,
        "seconds a rotated file must be quiet before the writer moves on to the new one", positive_float,
    )  # fmt: skip
    add_option(
        parser, "--max-batch-bytes", "USAGE_MAX_BATCH_BYTES", 4 << 20,
        "most bytes of log counted in one transaction", non_negative_int,
    )  # fmt: skip
    add_option(
        parser, "--token-charge", "GATEWAY_TOKEN_CHARGE", "envoy",
        "who charges responses' tokens to the token limits: envoy (Envoy, after each response) or usage "
        "(this service, per batch of the log, into --redis-url)", _charge_mode,
    )  # fmt: skip
    add_option(parser, "--redis-url", "REDIS_URL", "redis://127.0.0.1:6390/0",
               "the rate-limit counters (--token-charge usage)")  # fmt: skip
    add_option(parser, "--log-level", "LOG_LEVEL", "INFO", "logging level")
    args = parser.parse_args(argv)
    if not str(args.log) or str(args.log) == ".":
        parser.error("--log / GATEWAY_USAGE_LOG: the usage log's path is required")
    args.log = args.log.absolute()
    args.source = args.source or str(args.log)
    return args


def _charge_mode(raw: str) -> str:
    mode = raw.strip().lower()
    if mode not in ("envoy", "usage"):
        raise argparse.ArgumentTypeError(f"must be envoy or usage, got {raw!r}")
    return mode


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # main() owns SIGTERM/SIGINT and stops the server itself


async def serve(args: argparse.Namespace, charger: TokenCharger | None = None) -> None:
    tail = LogTail(args.log, max_bytes=max(args.max_batch_bytes, 64 << 10), settle_s=args.rotation_settle)
    writer = Writer(
        args.database_url, tail, args.source, interval_s=args.interval,
        hourly_retention=timedelta(days=args.hourly_retention_days), charger=charger,
    )  # fmt: skip
    app = create_app(lambda: writer.store.pool if writer.store else None, writer.state, args.admin_token)
    config = uvicorn.Config(app, host=args.host, port=args.http_port, log_level="warning", access_log=False)
    server = _Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("usage: reading %s (source %s), HTTP on %s:%d", args.log, args.source, args.host, args.http_port)
    writing = asyncio.create_task(writer.run(stop))
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await asyncio.gather(writing, serving)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    one_line_errors("asyncpg.pool")
    charger = None
    if args.token_charge == "usage":
        try:  # a URL it cannot use: one line now, not at the first batch
            charger = TokenCharger.from_url(args.redis_url)
        except ValueError as exc:
            raise SystemExit(f"{PROG}: error: --redis-url: {exc}") from None
    event_loop.run(serve(args, charger))


if __name__ == "__main__":
    main()

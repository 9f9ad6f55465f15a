"""`python -m bench.baselines.fastapi_gateway`: a seed-style FastAPI gateway, only for comparison.

Built the way seed 000 builds it: one uvicorn worker; an HTTP middleware that looks the
Bearer key up by SHA-256 in a dict and checks a sliding-window log per key (memory or Redis
sorted sets); then the request is proxied to the inference service with one shared
httpx.AsyncClient. Access logging is off (kinder to the baseline than uvicorn's default).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bench.baselines.sliding_log import MemoryLog, RedisLog
from common.settings import add_option, positive_int

PUBLIC_PATHS = frozenset({"/health", "/ready"})


def error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": message, "detail": message, "code": code}, status_code=status)


def build_app(upstream: str, key_hashes: set[str], limiter: MemoryLog | RedisLog) -> FastAPI:
    client = httpx.AsyncClient(base_url=upstream, timeout=30)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await client.aclose()
        await limiter.close()

    app = FastAPI(lifespan=lifespan)

    @app.middleware("http")
    async def auth_and_rate_limit(request: Request, call_next):
        if request.url.path in PUBLIC_PATHS:
            return await call_next(request)
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or hashlib.sha256(key.encode()).hexdigest() not in key_hashes:
            return error(401, "Invalid or missing API key", "AUTHENTICATION_ERROR")
        exceeded = await limiter.allow(key)
        if exceeded is not None:
            return error(429, f"Rate limit exceeded ({exceeded})", "RATE_LIMIT_EXCEEDED")
        return await call_next(request)

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def proxy(path: str, request: Request) -> Response:
        upstream_reply = await client.request(
            request.method,
            f"/{path}",
            content=await request.body(),
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        return Response(
            upstream_reply.content,
            status_code=upstream_reply.status_code,
            media_type=upstream_reply.headers.get("content-type"),
        )

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.baselines.fastapi_gateway", description=__doc__.splitlines()[0]
    )
    add_option(parser, "--port", "BASELINE_PORT", 8100, "port on 127.0.0.1", int)
    add_option(
        parser, "--upstream", "INFERENCE_SERVICE_URL", "http://127.0.0.1:8001", "inference service URL"
    )
    add_option(
        parser, "--keys-file", "BASELINE_KEYS_FILE", "", "file with one accepted API key per line", Path
    )
    add_option(parser, "--store", "BASELINE_STORE", "memory", "where the windows live: memory or redis")
    add_option(parser, "--redis-url", "REDIS_URL", "redis://127.0.0.1:6390/0", "Redis for --store redis")
    add_option(
        parser, "--rate-limit-minute", "RATE_LIMIT_MINUTE", 60, "requests per minute per key", positive_int
    )
    add_option(
        parser, "--rate-limit-hour", "RATE_LIMIT_HOUR", 1000, "requests per hour per key", positive_int
    )
    args = parser.parse_args(argv)
    if args.store not in ("memory", "redis"):
        parser.error(f"--store must be memory or redis, got {args.store!r}")
    try:
        keys = Path(args.keys_file).read_text().split()
    except OSError as exc:
        parser.error(f"--keys-file: {exc}")
    limits = {"minute": args.rate_limit_minute, "hour": args.rate_limit_hour}
    limiter = MemoryLog(limits) if args.store == "memory" else RedisLog(args.redis_url, limits)
    app = build_app(args.upstream, {hashlib.sha256(k.encode()).hexdigest() for k in keys}, limiter)
    print(f"fastapi baseline ({args.store}) on 127.0.0.1:{args.port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    sys.exit(0)


if __name__ == "__main__":
    main()

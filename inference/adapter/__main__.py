"""`python -m inference.adapter`: serve the adapter with uvicorn (SIGTERM = graceful shutdown)."""

from __future__ import annotations

import importlib.util

import uvicorn

from inference.adapter.app import create_app
from inference.adapter.settings import parse_settings


def fastest(preferred: str, fallback: str) -> str:
    """uvloop / httptools when installed (C event loop and HTTP parser), else the pure-Python ones."""
    return preferred if importlib.util.find_spec(preferred) else fallback


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop=fastest("uvloop", "asyncio"),
        http=fastest("httptools", "h11"),
        log_level=settings.log_level,
        access_log=False,  # no per-request logging on the hot path
        server_header=False,
        timeout_keep_alive=int(settings.keep_alive),
        backlog=2048,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()

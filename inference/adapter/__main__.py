"""`python -m inference.adapter`: serve the adapter with uvicorn (SIGTERM = graceful shutdown)."""

from __future__ import annotations

import uvicorn

from inference.adapter.app import create_app
from inference.adapter.settings import parse_settings


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # no per-request logging on the hot path
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()

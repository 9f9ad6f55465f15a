"""`python -m authz_service.http`: serve the key API with uvicorn (SIGTERM = graceful shutdown)."""

from __future__ import annotations

from dataclasses import fields

import uvicorn

from authz_service.http.app import create_app
from authz_service.http.settings import PROG, HttpSettings, build_parser
from authz_service.settings import box_from_args, plans_from_args
from common.logs import one_line_errors


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    plans = plans_from_args(args, PROG)
    box_from_args(args, PROG)  # a malformed master key: one line at start, not at the first request
    settings = HttpSettings(**{f.name: getattr(args, f.name) for f in fields(HttpSettings)})
    one_line_errors("asyncpg.pool")
    uvicorn.run(
        create_app(settings, plans),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # Envoy's access log already has every request
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()

"""Logging helpers shared by the services."""

from __future__ import annotations

import logging


class OneLine(logging.Filter):
    """Keep a library's message and the error's one-line summary, drop the traceback.

    asyncpg logs every failed reconnect of its pool with a full traceback; when Postgres is
    down (or stopping before us) that is a page of noise per second for one known condition.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def one_line_errors(*logger_names: str) -> None:
    for name in logger_names:
        logging.getLogger(name).addFilter(OneLine())

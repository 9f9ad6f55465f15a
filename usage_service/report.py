"""The key CLI's `usage` command (python -m authz_service.keys usage KEY_ID --since 7d [--plot F]):
the key's hourly records as a table and, with --plot, a PNG of requests and tokens per hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from usage_service.aggregate import COUNTERS
from usage_service.reading import hourly_since

MAX_SINCE = timedelta(days=31)  # hourly rows; the admin export covers longer ranges per day


async def key_usage(dsn: str, key_id: str, since: timedelta, plot: Path | None = None) -> dict[str, Any]:
    if not timedelta(hours=1) <= since <= MAX_SINCE:
        raise ValueError(f"--since must be between 1h and {MAX_SINCE.days}d")
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        try:
            hours = await hourly_since(conn, key_id, since, datetime.now(UTC))
        except asyncpg.UndefinedTableError:
            raise ValueError("no usage records in this database (the usage service has never run)") from None
    finally:
        await conn.close()
    result = {
        "key_id": key_id, "since": hours[0]["start"], "hours": hours,
        "totals": {c: sum(h[c] for h in hours) for c in COUNTERS}, "plot": None,
    }  # fmt: skip
    if plot is not None:
        write_plot(result, plot)
        result["plot"] = str(plot)
    return result


def text(result: dict[str, Any]) -> str:
    """Hours with traffic, one line each, and the totals."""
    columns = ["hour (UTC)", *COUNTERS]
    rows = [[h["start"][:16].replace("T", " "), *(str(h[c]) for c in COUNTERS)]
            for h in result["hours"] if h["requests"]]  # fmt: skip
    rows.append(["total", *(str(result["totals"][c]) for c in COUNTERS)])
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
    lines = [f"usage of {result['key_id']} since {result['since']}"]
    for row in [columns, *rows]:
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(cells)))
    if result["plot"]:
        lines.append(f"plot written to {result['plot']}")
    return "\n".join(lines)


def write_plot(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib (pip install matplotlib)") from None
    hours = [datetime.fromisoformat(h["start"].replace("Z", "+00:00")) for h in result["hours"]]
    figure, (requests, tokens) = plt.subplots(2, 1, sharex=True, figsize=(10, 5.5))
    requests.bar(hours, [h["requests"] for h in result["hours"]], width=1 / 24, align="edge", color="#4c72b0")
    requests.set_ylabel("requests / hour")
    tokens.bar(hours, [h["tokens"] for h in result["hours"]], width=1 / 24, align="edge", color="#dd8452")
    tokens.set_ylabel("tokens / hour")
    tokens.set_xlabel("hour (UTC)")
    requests.set_title(f"Usage of {result['key_id']} since {result['since']}")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

"""The usage records as the key API's /auth/profile (month to date) and the key CLI's `usage`
command read them, from the key store's database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from tests.authz_fixtures import create_key, keys_cli
from usage_service.schema import migrate


def seed(database_url: str, key_id: str) -> None:
    """This month: 7 requests, 50 tokens (in the last 24 hours); last month: 100 requests."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = now.date().replace(day=1)

    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await migrate(conn)
            await conn.executemany(
                "INSERT INTO usage_daily (key_id, route, day, requests, tokens) VALUES ($1, $2, $3, $4, $5)",
                [(key_id, "embed", now.date(), 5, 40), (key_id, "detect", first, 2, 10),
                 (key_id, "embed", first - timedelta(days=1), 100, 1000)],
            )  # fmt: skip
            await conn.executemany(
                "INSERT INTO usage_hourly (key_id, route, hour, requests, tokens, client_errors)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [(key_id, "embed", now, 5, 40, 1), (key_id, "detect", now - timedelta(hours=3), 2, 10, 0)],
            )
        finally:
            await conn.close()

    asyncio.run(run())


def test_profile_shows_month_to_date_requests_and_tokens(database_url: str, authz_http_port: int) -> None:
    _, record = create_key(database_url)
    url = f"http://127.0.0.1:{authz_http_port}/auth/profile"
    before = httpx.get(url, headers={"x-gateway-key-id": record.id}, timeout=10).json()
    assert before["month_to_date"]["requests"] == 0
    seed(database_url, record.id)
    profile = httpx.get(url, headers={"x-gateway-key-id": record.id}, timeout=10).json()
    month = profile["month_to_date"]
    assert (month["requests"], month["tokens"]) == (7, 50)
    assert month["since"].startswith(datetime.now(UTC).strftime("%Y-%m-01T00:00:00"))


def test_key_cli_usage_table_json_and_plot(database_url: str, tmp_path: Path) -> None:
    _, record = create_key(database_url)
    seed(database_url, record.id)
    plot = tmp_path / "usage.png"
    shown = keys_cli(database_url, "usage", record.id, "--since", "24h", "--plot", str(plot))
    assert shown.returncode == 0, shown.stderr
    total = next(line for line in shown.stdout.splitlines() if line.startswith("total")).split()
    assert total[1:] == ["7", "50", "1", "0", "0"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    as_json = keys_cli(database_url, "usage", record.id, "--since", "2d", "--json")
    body = json.loads(as_json.stdout)
    assert len(body["hours"]) == 48 and body["totals"]["requests"] == 7
    refused = keys_cli(database_url, "usage", record.id, "--since", "90d")
    assert refused.returncode == 2 and "--since" in refused.stderr

"""The usage service's HTTP answers without a database: auth, 422s, 503s, the export's row cap."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fastapi.testclient import TestClient

from usage_service.http import create_app
from usage_service.writer import WriterState

NOW = datetime(2026, 12, 7, 13, 25, tzinfo=UTC)
ADMIN = {"X-Admin-Token": "secret"}


class FakeDb:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def fetch(self, query: str, *args: object) -> list[dict[str, Any]]:
        return self.rows


def client(db: Any, **kwargs: Any) -> TestClient:
    return TestClient(create_app(lambda: db, WriterState(), "secret", now=lambda: NOW, **kwargs))


def daily_row(n: int) -> dict[str, Any]:
    counts = {"requests": n, "tokens": 10 * n, "client_errors": 0, "server_errors": 0, "rate_limited": 0}
    return {"key_id": f"key_{n}", "route": "embed", "bucket": date(2026, 12, 1), **counts}


def test_history_needs_the_gateway_key_header() -> None:
    answer = client(FakeDb([])).get("/v1/usage/history")
    assert answer.status_code == 401 and answer.json()["code"] == "AUTHENTICATION_ERROR"


def test_store_not_connected_is_a_503_json() -> None:
    answer = client(None).get("/v1/usage/history", headers={"x-gateway-key-id": "key_1"})
    assert answer.status_code == 503 and answer.json()["code"] == "SERVICE_UNAVAILABLE"
    assert answer.headers["retry-after"] == "1"
    assert client(None).get("/admin/usage", headers=ADMIN).status_code == 503


def test_export_is_capped() -> None:
    rows = [daily_row(n) for n in range(1, 5)]
    full = client(FakeDb(rows), max_export_rows=4).get("/admin/usage", headers=ADMIN)
    assert full.status_code == 200 and full.json()["totals"]["requests"] == 10
    cut = client(FakeDb(rows), max_export_rows=3).get("/admin/usage", headers=ADMIN)
    assert cut.status_code == 422 and cut.json()["detail"].startswith("end: more than 3 rows")


def test_admin_token_checks() -> None:
    assert client(FakeDb([])).get("/admin/usage").status_code == 401
    assert client(FakeDb([])).get("/admin/usage", headers={"X-Admin-Token": "nope"}).status_code == 401
    off = TestClient(create_app(lambda: FakeDb([]), WriterState(), "")).get("/admin/usage", headers=ADMIN)
    assert off.status_code == 403 and off.json()["code"] == "PERMISSION_DENIED"


def test_unknown_paths_and_methods_are_json() -> None:
    assert client(FakeDb([])).get("/nope").json()["code"] == "NOT_FOUND"
    assert client(FakeDb([])).post("/admin/usage", headers=ADMIN).json()["code"] == "METHOD_NOT_ALLOWED"

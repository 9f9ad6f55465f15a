"""Tokens in the usage records come from the real adapter (Triton behind it): the usage log's
tokens are the x-gateway-tokens the adapter sets, i.e. each response's usage.prompt_tokens."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.authz_fixtures import bearer, create_key
from tests.envoy_fixtures import spawn_envoy
from usage_service.aggregate import aggregate

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def test_usage_log_tokens_are_the_adapters_prompt_tokens(
    run_dir: Path, authz_port: int, loose_ratelimit_port: int, inference_adapter: str, database_url: str
) -> None:
    log = run_dir / "usage-tokens.jsonl"
    overrides = {
        "authz_port": str(authz_port), "ratelimit_port": str(loose_ratelimit_port),
        "adapter_port": str(httpx.URL(inference_adapter).port), "usage_log_path": str(log),
    }  # fmt: skip
    envoy = spawn_envoy(run_dir, "usage-tokens-envoy", overrides)
    try:
        key, record = create_key(database_url)
        with httpx.Client(base_url=envoy.url, headers=bearer(key), timeout=60) as http:
            answers = [
                http.post("/v1/embed", json={"input_text": "hello"}),
                http.post(
                    "/v1/embed", json={"input_text": "a somewhat longer sentence to embed, with words"}
                ),
                http.post(
                    "/v1/embeddings", json={"model": MODEL, "input": ["one", "two three four", "five six"]}
                ),
                http.post("/v1/embed", json={}),  # 422: no tokens
            ]
        assert [a.status_code for a in answers] == [200, 200, 200, 422]
        reported = sum(a.json()["usage"]["prompt_tokens"] for a in answers[:3])
        assert all(
            a.headers["x-gateway-tokens"] == str(a.json()["usage"]["prompt_tokens"]) for a in answers[:3]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not log.exists() or len(log.read_bytes().splitlines()) < 4):
            time.sleep(0.1)
        batch = aggregate(log.read_bytes().splitlines())
        by_route = {
            route: counts for (key_id, route, _), counts in batch.hourly.items() if key_id == record.id
        }
        assert by_route["embed"].requests == 3 and by_route["embed"].client_errors == 1
        assert by_route["embed"].tokens + by_route["embeddings"].tokens == reported > 0
    finally:
        envoy.proc.stop()

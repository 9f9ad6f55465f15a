"""GATEWAY_TOKEN_CHARGE=usage: Envoy makes no call after the response; the usage service charges
each batch's tokens to the keys' token windows (real Envoy, authz, ratelimit service, Valkey,
Postgres and writer). The check before inference is the same as with Envoy charging."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.authz_fixtures import create_key
from tests.envoy_fixtures import EnvoyUnderTest, spawn_envoy
from tests.procs import Proc, free_port, python_module
from tests.usage_fixtures import TokenUpstream, UsagePostgres, wait_for

TOKEN_LIMIT = 50


@dataclass
class Batched:
    envoy: EnvoyUnderTest
    upstream: TokenUpstream
    writer: Proc


@pytest.fixture(scope="module")
def batched(
    run_dir: Path,
    authz_port: int,
    loose_ratelimit_port: int,
    ratelimit_ports: tuple[int, int],
    redis_url: str,
) -> Iterator[Batched]:
    upstream, postgres = TokenUpstream(), UsagePostgres(run_dir)
    log_path = run_dir / "usage-batched" / "access.jsonl"
    log_path.parent.mkdir(exist_ok=True)
    http_port = free_port()
    overrides = {
        "authz_port": str(authz_port), "ratelimit_port": str(loose_ratelimit_port),
        "adapter_port": str(upstream.port), "usage_log_path": str(log_path),
        "usage_http_port": str(http_port), "token_charge": "usage",
        "ratelimit_http_port": str(ratelimit_ports[1]),  # GET /v1/usage, same Redis
    }  # fmt: skip
    envoy = spawn_envoy(run_dir, "usage-batched-envoy", overrides)
    args = [
        "--log",
        str(log_path),
        "--http-port",
        str(http_port),
        "--interval",
        "0.2",
        "--token-charge",
        "usage",
    ]
    env = {"DATABASE_URL": postgres.url, "REDIS_URL": redis_url}  # the ratelimit service's Redis
    writer = Proc("usage-batched-writer", python_module("usage_service", *args), run_dir, env)
    try:
        writer.wait_port(http_port, 30)
        yield Batched(envoy, upstream, writer)
    finally:
        writer.stop()
        envoy.proc.stop()
        postgres.cleanup()
        upstream.stop()


def embed(stack: Batched, key: str, tokens: int) -> httpx.Response:
    body = {"status": 200, "tokens": tokens}
    return httpx.post(f"{stack.envoy.url}/v1/embed", json=body, headers={"X-API-Key": key}, timeout=10)


def tokens_used(stack: Batched, key: str) -> int:
    usage = httpx.get(f"{stack.envoy.url}/v1/usage", headers={"X-API-Key": key}, timeout=10).json()
    return int(usage["usage"]["tokens_last_minute"])


def test_the_writer_charges_and_the_next_check_refuses(batched: Batched, database_url: str) -> None:
    key, _ = create_key(database_url, token_limit_per_minute=TOKEN_LIMIT)
    calls_before = batched.envoy.stat("cluster.inference_adapter.ratelimit.ok")
    first = embed(batched, key, 30)
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == str(TOKEN_LIMIT)
    # Envoy made one rate-limit call (the check), none after the response.
    assert batched.envoy.stat("cluster.inference_adapter.ratelimit.ok") == calls_before + 1
    took = wait_for(lambda: tokens_used(batched, key) == 30, 15)
    assert embed(batched, key, 30).status_code == 200  # 20 tokens were left: served, overshoots
    wait_for(lambda: tokens_used(batched, key) == 60, 15)
    refused = embed(batched, key, 30)
    assert refused.status_code == 429 and refused.json()["limit_type"] == "tokens_per_minute"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    time.sleep(1.5)  # the refusal charges nothing (no tokens in its log line)
    assert tokens_used(batched, key) == 60
    assert took < 15


def test_keys_without_token_limits_are_never_charged(batched: Batched, database_url: str) -> None:
    key, _ = create_key(database_url)
    assert embed(batched, key, 40).status_code == 200
    time.sleep(1.5)
    usage = httpx.get(f"{batched.envoy.url}/v1/usage", headers={"X-API-Key": key}, timeout=10).json()
    assert "tokens_last_minute" not in usage["usage"]

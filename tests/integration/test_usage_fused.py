"""Fused mode (the authz service decides the limits): its 429s are still usage records of the key.

An ext_authz refusal carries no grant, so the fused denial puts the key id in its dynamic metadata
itself; the usage log (which reads only that metadata) then has a line for every request."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from stack import envoy as envoy_launcher
from tests.authz_fixtures import bearer, create_key, spawn_authz, write_envoy_config
from tests.procs import Proc, free_port
from usage_service.aggregate import aggregate


def test_fused_refusals_are_logged_with_the_key(
    run_dir: Path, database_url: str, redis_url: str, echo_upstream: int
) -> None:
    flags = ("--fused-limits", "--redis-url", redis_url)
    authz, authz_port = spawn_authz(run_dir, "usage-fused-authz", database_url, *flags)
    log = run_dir / "usage-fused.jsonl"
    port, admin_port = free_port(), free_port()
    overrides = {
        "listen_port": str(port), "admin_port": str(admin_port), "authz_port": str(authz_port),
        "adapter_port": str(echo_upstream), "fused_limits": "true", "usage_log_path": str(log),
    }  # fmt: skip
    config = write_envoy_config(run_dir / "usage-fused.yaml", overrides, [authz_port])
    envoy = Proc("usage-fused-envoy", envoy_launcher.envoy_args(config, log_level="error"), run_dir)
    try:
        envoy.wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200, 30
        )
        key, record = create_key(database_url, rate_limit_minute=2)
        statuses = [
            httpx.post(
                f"http://127.0.0.1:{port}/v1/embed", json={"input_text": "x"}, headers=bearer(key)
            ).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 429, 429]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not log.exists() or len(log.read_bytes().splitlines()) < 4):
            time.sleep(0.1)
        lines = log.read_bytes().splitlines()
        assert [json.loads(line)["key_id"] for line in lines] == [record.id] * 4
        batch = aggregate(lines)
        [counts] = batch.hourly.values()
        assert (counts.requests, counts.rate_limited, counts.client_errors) == (4, 2, 0)
    finally:
        envoy.stop()
        authz.stop()

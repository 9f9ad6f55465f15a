"""The real service processes: 4 replicas under 64 concurrent clients on one Valkey and on a
Valkey Cluster, Redis killed mid-run, config errors at startup, hot reload, HTTP usage."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse

from tests.procs import PYTHON, ROOT
from tests.ratelimit_fixtures import RedisServer, is_ok, rl_request, write_config
from tests.unit.test_ratelimit_config import BAD_CONFIGS

REPLICAS, CLIENTS, PER_CLIENT = 4, 64, 5
LIMIT = 100  # per hour: the test never crosses a window, so "exact" means exactly LIMIT

EXACT_CONFIG = f"""
domain: exact
descriptors:
  - key: log
    rate_limit: {{unit: hour, requests_per_unit: {LIMIT}, algorithm: sliding_log}}
  - key: counter
    rate_limit: {{unit: hour, requests_per_unit: {LIMIT}}}
"""


async def hammer(ports: list[int], descriptor: list[tuple[str, str]]) -> list[RateLimitResponse]:
    """CLIENTS concurrent clients, each sending PER_CLIENT requests round-robin over replicas."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in ports]
    stubs = [rls_pb2_grpc.RateLimitServiceStub(c) for c in channels]
    request = rl_request("exact", descriptor)

    async def client(n: int) -> list[RateLimitResponse]:
        return [
            await stubs[(n + i) % len(stubs)].ShouldRateLimit(request, timeout=10) for i in range(PER_CLIENT)
        ]

    try:
        results = await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    finally:
        for channel in channels:
            await channel.close()
    return [r for batch in results for r in batch]


@pytest.mark.parametrize("store", ["single", "cluster"])
async def test_replicas_admit_exactly_the_limit_under_concurrency(
    store: str, request: pytest.FixtureRequest, ratelimit_factory, tmp_path: Path
) -> None:
    url = request.getfixturevalue("redis_url" if store == "single" else "redis_cluster_url")
    config = write_config(tmp_path / "exact.yaml", EXACT_CONFIG)
    replicas = [ratelimit_factory(config, url) for _ in range(REPLICAS)]
    ports = [r.grpc_port for r in replicas]
    for key in ("log", "counter"):
        responses = await hammer(ports, [(key, secrets.token_hex(6))])
        assert len(responses) == CLIENTS * PER_CLIENT
        assert sum(is_ok(r) for r in responses) == LIMIT, key  # not one more, not one less
        denied = [r for r in responses if not is_ok(r)]
        assert all(json.loads(r.raw_body)["code"] == "RATE_LIMIT_EXCEEDED" for r in denied)
    assert all(r.alive() for r in replicas)


FAILURE_CONFIG = """
domain: gateway
failure_mode: {mode}
descriptors:
  - key: api_key
    rate_limit: {{unit: minute, requests_per_unit: 1000}}
"""


def call(stub, key: str) -> RateLimitResponse:
    return stub.ShouldRateLimit(rl_request("gateway", [("api_key", key)]), timeout=5)


def metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{wanted}}} not in /metrics")


def test_redis_killed_mid_run_applies_the_failure_mode(
    private_redis: RedisServer, ratelimit_factory, tmp_path: Path
) -> None:
    allow_cfg = write_config(tmp_path / "allow.yaml", FAILURE_CONFIG.format(mode="allow"))
    deny_cfg = write_config(tmp_path / "deny.yaml", FAILURE_CONFIG.format(mode="deny"))
    allow = ratelimit_factory(allow_cfg, private_redis.url)
    deny = ratelimit_factory(deny_cfg, private_redis.url)
    allow_stub, deny_stub = allow.stub(), deny.stub()
    key = secrets.token_hex(4)
    for _ in range(3):  # store up: answers come from Redis (remaining-quota headers present)
        for stub in (allow_stub, deny_stub):
            response = call(stub, key)
            assert is_ok(response) and response.response_headers_to_add
    private_redis.stop()
    for _ in range(5):
        allowed = call(allow_stub, key)
        assert is_ok(allowed) and not allowed.response_headers_to_add  # let through, unmetered
        denied = call(deny_stub, key)
        assert denied.overall_code == RateLimitResponse.OVER_LIMIT
        assert json.loads(denied.raw_body)["code"] == "SERVICE_UNAVAILABLE"
        assert denied.dynamic_metadata["store"] == "unavailable"  # Envoy's cue for a 503
    assert allow.alive() and deny.alive()
    labels = {"domain": "gateway", "descriptor": "api_key"}
    assert metric(allow.http_port, "ratelimit_decisions_total", **labels, result="failure_mode_allowed") == 5
    assert metric(deny.http_port, "ratelimit_decisions_total", **labels, result="failure_mode_denied") == 5
    assert httpx.get(f"http://127.0.0.1:{allow.http_port}/health").json()["store"] == "unreachable"
    private_redis.start()  # same port: the services reconnect by themselves
    deadline = time.monotonic() + 10
    while not call(deny_stub, key).response_headers_to_add:
        assert time.monotonic() < deadline, "no recovery after Redis came back"
        time.sleep(0.1)
    assert is_ok(call(allow_stub, key)) and call(allow_stub, key).response_headers_to_add


def test_each_bad_config_is_refused_at_startup_naming_file_path_and_problem(tmp_path: Path) -> None:
    runs = []
    for i, case in enumerate(BAD_CONFIGS):
        text, message = case.values
        path = tmp_path / f"bad-{i}.yaml"
        path.write_text(text)
        args = [PYTHON, "-m", "ratelimit_service", "--config", str(path), "--grpc-port", "0"]
        runs.append(
            (case.id, path, message, subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True))
        )
    for case_id, path, message, proc in runs:
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2, case_id
        line = stderr.strip()
        assert line.startswith(f"ratelimit_service: error: bad config: {path}: "), (case_id, line)
        assert message in line and "\n" not in line and "Traceback" not in line, (case_id, line)


def test_hot_reload_swaps_config_and_keeps_the_old_one_on_a_bad_file(
    ratelimit_factory, tmp_path: Path
) -> None:
    limits = "domain: gateway\ndescriptors:\n  - key: api_key\n"
    limits += "    rate_limit: {{unit: hour, requests_per_unit: {n}}}\n"
    config = write_config(tmp_path / "live.yaml", limits.format(n=2))
    service = ratelimit_factory(config, "memory://", "--reload-interval", "0.1")
    stub = service.stub()
    assert [is_ok(call(stub, "a")) for _ in range(3)] == [True, True, False]
    config.write_text(limits.format(n=4))
    deadline = time.monotonic() + 10
    while not is_ok(call(stub, "a")):  # counters survive the reload: 2 used, 2 more now fit
        assert time.monotonic() < deadline, "new config never applied"
        time.sleep(0.05)
    assert [is_ok(call(stub, "a")) for _ in range(2)] == [True, False]
    config.write_text(limits.format(n=4).replace("hour", "fortnight"))  # invalid: no such unit
    deadline = time.monotonic() + 10
    while "config reload rejected" not in service.proc.log_tail():
        assert time.monotonic() < deadline, "bad config not reported"
        time.sleep(0.05)
    assert f"{config}: descriptors[0].rate_limit.unit: invalid rate limit unit 'fortnight'" in (
        service.proc.log_tail()
    )
    assert [is_ok(call(stub, "b")) for _ in range(5)] == [True] * 4 + [False]  # still 4 per hour
    assert metric(service.http_port, "ratelimit_config_reloads_total", result="rejected") == 1
    assert service.alive()


def test_usage_metrics_and_errors_over_http(ratelimit_factory, redis_url: str) -> None:
    service = ratelimit_factory(None, redis_url, "--rate-limit-minute", "7")
    stub = service.stub()
    key_id = f"key_{secrets.token_hex(8)}"
    request = rl_request("gateway", [("route", "v1"), ("plan", "free"), ("api_key", key_id)])
    assert all(is_ok(stub.ShouldRateLimit(request)) for _ in range(3))
    base = f"http://127.0.0.1:{service.http_port}"
    headers = {"x-gateway-key-id": key_id, "x-gateway-plan": "free"}
    body = httpx.get(f"{base}/v1/usage", headers=headers).json()
    assert body["user_id"] == key_id
    assert body["usage"]["requests_last_minute"] == 3 and body["usage"]["requests_last_hour"] == 3
    assert body["usage"]["timestamp"].endswith("Z")
    assert body["limits"] == {"per_minute": 7, "per_hour": 1000}
    assert httpx.get(f"{base}/v1/usage", headers=headers).json()["usage"]["requests_last_minute"] == 3
    own = httpx.get(f"{base}/v1/usage", headers={**headers, "x-gateway-rate-limit-minute": "70"}).json()
    assert own["limits"]["per_minute"] == 70
    missing = httpx.get(f"{base}/v1/usage")
    assert missing.status_code == 401 and missing.json()["code"] == "AUTHENTICATION_ERROR"
    assert httpx.get(f"{base}/nowhere").json()["code"] == "NOT_FOUND"
    assert httpx.post(f"{base}/v1/usage", headers=headers).json()["code"] == "METHOD_NOT_ALLOWED"
    text = httpx.get(f"{base}/metrics").text
    labels = 'descriptor="route_v1.plan.api_key",domain="gateway",result="within_limit"'
    assert f"ratelimit_decisions_total{{{labels}}} 3.0" in text
    assert "ratelimit_store_seconds_count" in text


def test_per_key_limits_in_the_descriptor_beat_the_config(ratelimit_factory, redis_url: str) -> None:
    """The entries Envoy's CEL descriptors add from ext_authz's metadata (numbers as "2" or "70.0")."""
    stub = ratelimit_factory(None, redis_url).stub()
    base = [("route", "v1"), ("plan", "free"), ("api_key", f"key_{secrets.token_hex(8)}")]
    own = rl_request("gateway", [*base, ("rate_limit_minute", "2"), ("rate_limit_hour", "70.0")])
    replies = [stub.ShouldRateLimit(own) for _ in range(3)]
    assert [is_ok(r) for r in replies] == [True, True, False]
    body = json.loads(replies[-1].raw_body)
    assert (body["limit"], body["limit_type"]) == (2, "minute")
    headers = {h.key: h.value for h in replies[0].response_headers_to_add}
    assert headers["x-ratelimit-limit-minute"] == "2" and headers["x-ratelimit-limit-hour"] == "70"
    # Same counters without the override: the key already used 2 of the config's 60.
    plain = stub.ShouldRateLimit(rl_request("gateway", base))
    assert {h.key: h.value for h in plain.response_headers_to_add}["x-ratelimit-remaining-minute"] == "57"

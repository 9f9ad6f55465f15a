"""Fused mode through a real Envoy (the template rendered with fused_limits) and a real authz service
deciding the limits on the session Valkey and Postgres: the client sees what the standard path
(`authz_gateway`: ext_authz + the session ratelimit service) gives, with one sidecar call per request."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from authz_service import signing
from authz_service.sealing import SecretBox
from authz_service.store import new_key_id, new_signing_secret
from ratelimit_service import responses
from stack import envoy as envoy_launcher
from tests.authz_fixtures import AuthzGateway, bearer, create_key, spawn_authz, write_envoy_config
from tests.procs import Proc, free_port
from tests.ratelimit_fixtures import DENY_CONFIG, RedisServer, write_config
from tests.signing_keys import SIGNING_MASTER_KEY

EMBED, USAGE, PROFILE = "/v1/embed", "/v1/usage", "/auth/profile"
PLAN_MINUTE = 3  # spawn_authz's RATE_LIMIT_MINUTE, also the session ratelimit service's limit
# Differ between any two responses whatever the path: when, which request, how long; Envoy closes
# the connection of a local reply sent before the request body was all read (a race).
VOLATILE = {"date", "x-request-id", "x-envoy-upstream-service-time", "connection"}
TIMED = ("retry-after", "x-ratelimit-reset")  # seconds from now: may differ by a tick


@dataclass
class FusedGateway:
    url: str
    admin_url: str
    procs: list[Proc]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def counter(self, name: str) -> int:
        text = httpx.get(f"{self.admin_url}/stats", params={"filter": f"^{name}$"}, timeout=2).text
        return sum(int(line.partition(": ")[2]) for line in text.splitlines() if line.startswith(name))


def start_fused(
    run_dir: Path, name: str, database_url: str, redis_url: str, http_ports: tuple[int, int], echo: int,
    *extra: str,
) -> FusedGateway:  # fmt: skip
    """A fused authz service, and an Envoy rendered in fused mode in front of the echo upstream."""
    flags = ("--fused-limits", "--redis-url", redis_url, *extra)
    authz, authz_port = spawn_authz(run_dir, f"{name}-authz", database_url, *flags)
    procs = [authz]
    try:
        port, admin_port = free_port(), free_port()
        overrides = {
            "listen_port": str(port), "admin_port": str(admin_port), "authz_port": str(authz_port),
            "authz_http_port": str(http_ports[0]), "ratelimit_http_port": str(http_ports[1]),
            "adapter_port": str(echo), "fused_limits": "true",
        }  # fmt: skip
        config = write_envoy_config(run_dir / f"{name}.yaml", overrides, [authz_port])
        envoy_launcher.validate(config)
        procs.append(Proc(name, envoy_launcher.envoy_args(config, log_level="error"), run_dir))
        admin = f"http://127.0.0.1:{admin_port}"

        def healthy() -> bool:
            lines = httpx.get(f"{admin}/clusters", timeout=1).text.splitlines()
            up = {line.split("::")[0] for line in lines if line.endswith("::health_flags::healthy")}
            return {"authz", "inference_adapter"} <= up

        procs[-1].wait_until(healthy, 30, "routing to a healthy authz")
        return FusedGateway(f"http://127.0.0.1:{port}", admin, procs)
    except BaseException:
        for proc in reversed(procs):
            proc.stop()
        raise


@pytest.fixture(scope="module")
def fused(
    run_dir: Path,
    database_url: str,
    redis_url: str,
    authz_http_port: int,
    ratelimit_ports: tuple[int, int],
    echo_upstream: int,
) -> Iterator[FusedGateway]:
    http_ports = (authz_http_port, ratelimit_ports[1])
    gateway = start_fused(run_dir, "envoy-fused", database_url, redis_url, http_ports, echo_upstream)
    yield gateway
    gateway.stop()


def embed(client: httpx.Client, key: str) -> httpx.Response:
    return client.post(EMBED, json={"input_text": "fused"}, headers=bearer(key))


def until_denied(url: str, key: str, limit: int) -> tuple[list[httpx.Response], httpx.Response]:
    """`limit` requests that must pass, then the one that must not."""
    with httpx.Client(base_url=url, timeout=30) as client:
        return [embed(client, key) for _ in range(limit)], embed(client, key)


def comparable(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in VOLATILE and k not in TIMED}


def assert_same_response(fused: httpx.Response, standard: httpx.Response) -> None:
    assert fused.status_code == standard.status_code
    assert comparable(fused) == comparable(standard)
    for name in TIMED:
        assert (name in fused.headers) == (name in standard.headers), name
        if name in fused.headers:
            assert abs(int(fused.headers[name]) - int(standard.headers[name])) <= 2, name


def test_limit_then_the_standard_429(fused: FusedGateway, authz_gateway: AuthzGateway) -> None:
    fused_key, _ = authz_gateway.new_key()
    standard_key, _ = authz_gateway.new_key()
    fused_ok, fused_429 = until_denied(fused.url, fused_key, PLAN_MINUTE)
    standard_ok, standard_429 = until_denied(authz_gateway.url, standard_key, PLAN_MINUTE)
    for i, (mine, theirs) in enumerate(zip(fused_ok, standard_ok, strict=True)):
        assert mine.status_code == 200, mine.text
        assert mine.headers["x-ratelimit-remaining-minute"] == str(PLAN_MINUTE - 1 - i)
        assert mine.json()["headers"]["x-gateway-key-id"]  # the upstream got the identity
        assert_same_response(mine, theirs)
    assert fused_429.status_code == 429, fused_429.text
    assert fused_429.headers["x-ratelimit-remaining"] == "0"
    assert_same_response(fused_429, standard_429)
    body, expected = fused_429.json(), standard_429.json()
    assert abs(body.pop("retry_after") - expected.pop("retry_after")) <= 2
    assert body.pop("detail").split(" Retry after")[0] == expected.pop("detail").split(" Retry after")[0]
    assert body == expected and body["code"] == "RATE_LIMIT_EXCEEDED" and body["limit"] == PLAN_MINUTE
    assert fused.counter("cluster.ratelimit.upstream_rq_total") == 0  # no such cluster: one call


def test_per_key_limits(fused: FusedGateway, database_url: str) -> None:
    key, _ = create_key(database_url, rate_limit_minute=5, rate_limit_hour=7)
    passed, denied = until_denied(fused.url, key, 5)
    assert [r.status_code for r in passed] == [200] * 5
    assert passed[0].headers["x-ratelimit-limit-minute"] == "5"
    assert passed[0].headers["x-ratelimit-limit-hour"] == "7"
    assert denied.status_code == 429 and denied.json()["limit"] == 5
    hourly, _ = create_key(database_url, rate_limit_hour=2)
    passed, denied = until_denied(fused.url, hourly, 2)
    assert [r.status_code for r in passed] == [200, 200]
    assert denied.status_code == 429 and denied.json()["limit_type"] == "hour"


def test_usage_and_profile_are_not_charged(fused: FusedGateway, database_url: str) -> None:
    key, _ = create_key(database_url)
    with httpx.Client(base_url=fused.url, timeout=30) as client:
        assert embed(client, key).status_code == 200
        for _ in range(PLAN_MINUTE + 2):
            usage = client.get(USAGE, headers=bearer(key))
            assert usage.status_code == 200, usage.text
            assert "x-ratelimit-limit" not in usage.headers
            assert client.get(PROFILE, headers=bearer(key)).status_code == 200
        assert usage.json()["usage"]["requests_last_minute"] == 1  # read from the same Redis keys
        assert usage.json()["limits"]["per_minute"] == PLAN_MINUTE
        left = [embed(client, key).status_code for _ in range(PLAN_MINUTE)]
    assert left == [200] * (PLAN_MINUTE - 1) + [429]


def test_no_over_admission_under_concurrency(fused: FusedGateway, database_url: str) -> None:
    limit, sent = 20, 80
    key, _ = create_key(database_url, rate_limit_minute=limit)
    granted = fused.counter("http.public.ext_authz.ok")
    pool = concurrent.futures.ThreadPoolExecutor(16)
    with httpx.Client(base_url=fused.url, timeout=30) as client, pool:
        codes = list(pool.map(lambda _: embed(client, key).status_code, range(sent)))
    # Admitted = not 429 (the echo upstream may refuse some of 16 connections at once: 503).
    assert sent - codes.count(429) == limit, str(sorted(codes))
    assert fused.counter("http.public.ext_authz.ok") - granted == limit


def test_store_down_follows_the_config_failure_mode(
    run_dir: Path,
    database_url: str,
    private_redis: RedisServer,
    authz_http_port: int,
    ratelimit_ports: tuple[int, int],
    echo_upstream: int,
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "deny.yaml", DENY_CONFIG)
    http_ports = (authz_http_port, ratelimit_ports[1])
    gateway = start_fused(
        run_dir, f"envoy-fused-deny-{private_redis.port}", database_url, private_redis.url, http_ports,
        echo_upstream, "--ratelimit-config", str(config),
    )  # fmt: skip
    key, _ = create_key(database_url)
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            up = embed(client, key)
            assert up.status_code == 200 and up.headers["x-ratelimit-limit-minute"] == "50"
            private_redis.stop()
            down = embed(client, key)
            assert down.status_code == 503, down.text
            assert down.headers["content-type"].startswith("application/json")
            assert down.headers["retry-after"] == "1"
            assert down.headers["x-ratelimit-store"] == "unavailable"
            assert down.json() == json.loads(responses.STORE_UNAVAILABLE.raw_body)  # not Envoy's 503 body
            assert client.get(PROFILE, headers=bearer(key)).status_code == 200  # not a limited route
    finally:
        gateway.stop()


def test_signed_requests_are_verified_before_they_are_charged(fused: FusedGateway, database_url: str) -> None:
    """Fused mode: the signed route still sends the body to authz, and a request whose signature
    fails is refused (401) before any quota is charged."""
    key_id = new_key_id()
    secret, sealed = new_signing_secret(SecretBox(SIGNING_MASTER_KEY), key_id)
    key, _ = create_key(database_url, rate_limit_minute=2, key_id=key_id, signing_secret_enc=sealed)
    body = b'{"input_text": "fused and signed"}'

    sent_count = iter(range(1000))

    def send(signed_with: str) -> httpx.Response:
        path, stamp = f"{EMBED}?n={next(sent_count)}", str(int(time.time()))  # each signature new
        sent = {"X-Signature-Timestamp": stamp,
                "X-Signature": signing.signature(signed_with, stamp, "POST", path, body)}  # fmt: skip
        headers = {**bearer(key), "Content-Type": "application/json", **sent}
        return httpx.post(fused.url + path, content=body, headers=headers, timeout=10)

    refused = [send("ss_" + "x" * 43) for _ in range(3)]  # wrong secret: never charged
    assert {r.status_code for r in refused} == {401}
    assert all(r.json()["reason"] == "signature_mismatch" for r in refused)
    # Past authz and its limits: what the echo upstream then answers does not matter here (the
    # concurrency test before this one can leave it briefly ejected: 503 from Envoy's router).
    passed = [send(secret) for _ in range(2)]
    assert all(r.status_code not in (401, 429) for r in passed), [r.text for r in passed]
    limited = send(secret)
    assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMIT_EXCEEDED"

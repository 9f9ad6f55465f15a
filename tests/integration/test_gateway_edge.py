"""The public edge, through a real Envoy: trusted hosts, no server banner, nosniff on every answer.

Envoy alone (no sidecars, no adapter): what is checked here is decided before any upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.envoy_fixtures import EnvoyUnderTest, dead_upstreams, launcher_error, spawn_envoy

DEAD = dead_upstreams()


@pytest.fixture(scope="module")
def behind_one_proxy(run_dir: Path) -> Iterator[EnvoyUnderTest]:
    envoy = spawn_envoy(run_dir, "edge-one-trusted-hop", {**DEAD, "trusted_hops": "1"}, wait_ready=False)
    yield envoy
    envoy.proc.stop()


def client_address(envoy: EnvoyUnderTest, marker: str) -> str:
    """The client address Envoy logged for the request whose path holds `marker` (access log)."""
    deadline = time.monotonic() + 10  # access log lines are flushed every second
    while time.monotonic() < deadline:
        for line in envoy.access_log():
            if marker in line:
                return json.loads(line)["client"]
        time.sleep(0.2)
    raise AssertionError(f"no access log line for {marker}")


@pytest.fixture(scope="module")
def edge(run_dir: Path) -> Iterator[tuple[EnvoyUnderTest, EnvoyUnderTest]]:
    """(any host served, only api.example.com and *.example.org served)."""
    open_envoy = spawn_envoy(run_dir, "edge-any-host", DEAD, wait_ready=False)
    strict = spawn_envoy(
        run_dir,
        "edge-allowed-hosts",
        {**DEAD, "allowed_hosts": "api.example.com, *.example.org"},
        wait_ready=False,
    )
    yield open_envoy, strict
    open_envoy.proc.stop()
    strict.proc.stop()


def hardened(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff", response.headers
    assert "server" not in response.headers, response.headers["server"]
    assert response.headers["content-type"].startswith("application/json")


def test_a_host_not_allowed_gets_json_421_before_any_key_check(edge) -> None:
    _, strict = edge
    for host in ("evil.example", "api.example.com.evil.example", "example.org"):
        response = httpx.post(f"{strict.url}/v1/embed", json={"input_text": "x"}, headers={"host": host})
        assert response.status_code == 421, (host, response.text)
        assert response.json()["code"] == "VALIDATION_ERROR" and response.json()["error"] == "Invalid host"
        hardened(response)


def test_allowed_hosts_with_or_without_a_port_are_routed(edge) -> None:
    _, strict = edge
    for host in ("api.example.com", "api.example.com:8443", "eu.example.org", "API.EXAMPLE.COM"):
        # Routed: no key → the (unreachable) authz service decides → fail closed, JSON 503; /ready → 503.
        embed = httpx.post(f"{strict.url}/v1/embed", json={"input_text": "x"}, headers={"host": host})
        assert embed.status_code == 503 and embed.json()["code"] == "SERVICE_UNAVAILABLE", (host, embed.text)
        hardened(embed)
        assert httpx.get(f"{strict.url}/ready", headers={"host": host}).status_code == 503


def test_any_host_by_default_and_every_local_answer_is_hardened(edge) -> None:
    open_envoy, _ = edge
    missing = httpx.get(f"{open_envoy.url}/no/such/route", headers={"host": "whatever.test"})
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    hardened(missing)
    denied = httpx.post(
        f"{open_envoy.url}/v1/embed", json={"input_text": "x"}, headers={"host": "whatever.test"}
    )
    assert denied.status_code == 503
    hardened(denied)


def test_a_client_cannot_choose_its_address_with_x_forwarded_for(edge, behind_one_proxy) -> None:
    open_envoy, _ = edge
    spoofed = {"x-forwarded-for": "203.0.113.9"}
    httpx.get(f"{open_envoy.url}/no/such/route/spoof-direct", headers=spoofed)
    assert client_address(open_envoy, "spoof-direct") == "127.0.0.1"  # the TCP peer: no trusted hops
    # One trusted proxy in front: the address it appended is the client's.
    relayed = {"x-forwarded-for": "198.51.100.7, 203.0.113.9"}
    httpx.get(f"{behind_one_proxy.url}/no/such/route/via-proxy", headers=relayed)
    assert client_address(behind_one_proxy, "via-proxy") == "203.0.113.9"


def spawn(run_dir: Path, name: str, **values: str) -> EnvoyUnderTest:
    return spawn_envoy(run_dir, name, {**DEAD, **values}, wait_ready=False)


def embed_from(envoy: EnvoyUnderTest, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    return httpx.post(f"{envoy.url}/v1/embed", json={"input_text": "x"}, headers=headers)


def test_gateway_wide_allow_and_deny_lists_refuse_before_any_sidecar_call(run_dir: Path) -> None:
    envoys = [
        spawn(run_dir, "edge-allow-10", allow_cidrs="10.0.0.0/8"),
        spawn(run_dir, "edge-deny-local", deny_cidrs="127.0.0.1"),
        spawn(run_dir, "edge-deny-beats-allow", allow_cidrs="127.0.0.0/8", deny_cidrs="127.0.0.1/32"),
        spawn(run_dir, "edge-allow-local", allow_cidrs="127.0.0.0/8, ::1"),
    ]
    try:
        for envoy in envoys[:3]:
            refused = embed_from(envoy)
            assert refused.status_code == 403, refused.text
            body = refused.json()
            assert body["code"] == "PERMISSION_DENIED" and "127.0.0.1" in body["detail"]
            hardened(refused)
            assert envoy.stat("http.public.ext_authz.error") == 0  # ext_authz never ran
        allowed = embed_from(envoys[3])
        assert allowed.status_code == 503 and allowed.json()["code"] == "SERVICE_UNAVAILABLE"  # on to authz
        assert envoys[3].stat("http.public.ext_authz.error") >= 1  # (the dead authz: the counter works)
    finally:
        for envoy in envoys:
            envoy.proc.stop()


def test_ipv6_client_ranges_through_a_trusted_proxy(run_dir: Path) -> None:
    envoy = spawn(run_dir, "edge-allow-v6", allow_cidrs="2001:db8::/32", trusted_hops="1")
    try:
        assert embed_from(envoy, "2001:db8::5").status_code == 503  # allowed: on to the (dead) authz
        refused = embed_from(envoy, "2001:dead::1")
        assert refused.status_code == 403 and "2001:dead::1" in refused.json()["detail"]
    finally:
        envoy.proc.stop()


def test_a_bad_cidr_stops_the_launcher_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    assert launcher_error(tmp_path, GATEWAY_ALLOW_CIDRS="10.0.0.0/33") == (
        "envoy: GATEWAY_ALLOW_CIDRS: '10.0.0.0/33' is not an IPv4/IPv6 address or CIDR "
        "('10.0.0.0/33' does not appear to be an IPv4 or IPv6 network)"
    )

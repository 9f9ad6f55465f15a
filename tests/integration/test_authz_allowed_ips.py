"""Per-key client address allowlists (`allowed_ips`): set at registration or in the key CLI, kept
across rotation, enforced by authz on the address Envoy decided, changed live on every replica."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.authz_fixtures import ADMIN_TOKEN, AuthzGateway, assert_error, fetchval, keys_cli

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}


@pytest.fixture
def http(authz_gateway: AuthzGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=authz_gateway.url, timeout=10) as client:
        yield client


def register(http: httpx.Client, allowed: list[str]) -> dict:
    response = http.post("/auth/register", json={"name": "ip-bound", "allowed_ips": allowed}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def embed(http: httpx.Client, key: str) -> httpx.Response:
    return http.post("/v1/embed", json={"input_text": "hi"}, headers={"X-API-Key": key})


def test_a_key_is_refused_outside_its_networks_and_served_inside(http: httpx.Client) -> None:
    elsewhere = register(http, ["10.0.0.0/8", "2001:db8::/32"])
    assert elsewhere["allowed_ips"] == ["10.0.0.0/8", "2001:db8::/32"]
    body = assert_error(embed(http, elsewhere["api_key"]), 403, "PERMISSION_DENIED")
    assert "may not be used from 127.0.0.1" in body["detail"]
    here = register(http, ["127.0.0.1", "::1"])
    assert here["allowed_ips"] == ["127.0.0.1/32", "::1/128"]
    assert embed(http, here["api_key"]).status_code == 200
    anywhere = register(http, [])
    assert anywhere["allowed_ips"] == [] and embed(http, anywhere["api_key"]).status_code == 200


def test_a_change_reaches_the_replicas_as_revocations_do(
    http: httpx.Client, authz_gateway: AuthzGateway
) -> None:
    key = register(http, ["127.0.0.0/8"])
    assert embed(http, key["api_key"]).status_code == 200  # cached by the replica that answered
    fetchval(
        authz_gateway.database_url,
        "UPDATE api_keys SET allowed_ips = '{10.0.0.0/8}' WHERE id = $1",
        key["id"],
    )
    deadline = time.monotonic() + 5
    while embed(http, key["api_key"]).status_code != 403:
        assert time.monotonic() < deadline, "the narrowed allowlist never reached the authz replicas"
        time.sleep(0.1)
    # Every replica: several requests in a row are all refused now.
    assert {embed(http, key["api_key"]).status_code for _ in range(6)} == {403}


@pytest.mark.parametrize("bad", [["10.0.0.0/33"], ["not-an-ip"], [""], ["10.0.0.1"] * 65])
def test_bad_networks_are_refused_at_registration(http: httpx.Client, bad: list[str]) -> None:
    response = http.post("/auth/register", json={"name": "x", "allowed_ips": bad}, headers=ADMIN)
    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert "allowed_ips" in body["detail"]


def test_the_key_cli_sets_them_and_rotation_keeps_them(authz_gateway: AuthzGateway) -> None:
    made = keys_cli(authz_gateway.database_url, "generate", "--name", "cli-ip", "--allow-ip", "192.0.2.0/24",
                    "--allow-ip", "2001:db8::1", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["allowed_ips"] == ["192.0.2.0/24", "2001:db8::1/128"]
    rotated = json.loads(keys_cli(authz_gateway.database_url, "rotate", key["id"], "--json").stdout)
    assert rotated["allowed_ips"] == key["allowed_ips"]
    bad = keys_cli(authz_gateway.database_url, "generate", "--name", "x", "--allow-ip", "300.1.1.1")
    assert bad.returncode == 2 and "is not an IPv4/IPv6 address or CIDR" in bad.stderr

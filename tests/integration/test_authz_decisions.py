"""ext_authz decisions through real Envoy, two real authz replicas and real Postgres.

The "inference" upstream is an echo server, so the tests see exactly which headers reached it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.authz_fixtures import AuthzGateway, assert_error, bearer

EMBED = "/v1/embed"


@pytest.fixture
def http(authz_gateway: AuthzGateway) -> httpx.Client:
    with httpx.Client(base_url=authz_gateway.url, timeout=10) as client:
        yield client


@pytest.mark.parametrize(
    ("headers", "word"),
    [
        ({}, "Missing"),
        ({"Authorization": "Bearer"}, "Missing"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Malformed"),  # wrong scheme
        ({"Authorization": "Bearer pk_live_" + "a" * 43}, "Malformed"),  # unknown prefix
        ({"Authorization": "Bearer sk_live_" + "a" * 20}, "Malformed"),  # too short
        ({"X-API-Key": "sk_live_" + "a" * 200}, "Malformed"),  # too long
        ({"X-API-Key": "sk_live_" + "a" * 40 + "$%"}, "Malformed"),  # bad characters
        ({"X-API-Key": "sk_live_" + "z" * 43}, "Unknown"),
    ],
)
def test_unusable_keys_are_401_saying_why(http: httpx.Client, headers: dict[str, str], word: str) -> None:
    response = http.post(EMBED, json={"input_text": "hi"}, headers=headers)
    body = assert_error(response, 401, "AUTHENTICATION_ERROR")
    assert word in body["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    for value in headers.values():  # never echo what the client sent
        secret = value.split(" ")[-1]
        assert len(secret) < 10 or secret not in response.text


def test_identity_headers_reach_the_upstream_and_spoofed_copies_never_do(
    http: httpx.Client, authz_gateway: AuthzGateway
) -> None:
    key, record = authz_gateway.new_key(owner="acme", plan="pro")
    spoofed = {"x-gateway-key-id": "key_victim", "x-gateway-owner": "victim", "x-gateway-plan": "enterprise"}
    for credentials in (bearer(key), {"X-API-Key": key}):
        response = http.post(EMBED, json={"input_text": "hi"}, headers={**credentials, **spoofed})
        assert response.status_code == 200, response.text
        seen = response.json()["headers"]
        assert seen["x-gateway-key-id"] == record.id
        assert seen["x-gateway-owner"] == "acme"
        assert seen["x-gateway-plan"] == "pro"
        assert "authorization" not in seen and "x-api-key" not in seen
        assert "victim" not in response.text and "enterprise" not in response.text


def test_a_forged_key_id_header_authenticates_nothing(
    http: httpx.Client, authz_gateway: AuthzGateway
) -> None:
    _, record = authz_gateway.new_key()
    for path in ("/auth/profile", EMBED):
        response = http.post(path, headers={"x-gateway-key-id": record.id}) if path == EMBED else None
        response = response or http.get(path, headers={"x-gateway-key-id": record.id})
        assert "Missing" in assert_error(response, 401, "AUTHENTICATION_ERROR")["detail"]


def test_expiry_applies_to_cached_keys(http: httpx.Client, authz_gateway: AuthzGateway) -> None:
    key, _ = authz_gateway.new_key(expires_at=datetime.now(UTC) + timedelta(seconds=1.5))
    assert http.post(EMBED, json={"input_text": "a"}, headers=bearer(key)).status_code == 200
    time.sleep(1.6)
    response = http.post(EMBED, json={"input_text": "b"}, headers=bearer(key))
    assert "expired" in assert_error(response, 401, "AUTHENTICATION_ERROR")["detail"]


def test_scopes_limit_route_groups_with_403(http: httpx.Client, authz_gateway: AuthzGateway) -> None:
    embed_only, _ = authz_gateway.new_key(scopes=("embed",))
    assert http.post(EMBED, json={"input_text": "a"}, headers=bearer(embed_only)).status_code == 200
    assert http.post("/v1/embeddings", json={"input": "a"}, headers=bearer(embed_only)).status_code == 200
    for path in ("/v1/usage", "/auth/profile", "/v1/detect", "/v1/%75sage"):
        body = assert_error(http.get(path, headers=bearer(embed_only)), 403, "PERMISSION_DENIED")
        assert "scopes" in body["detail"]
    usage_only, _ = authz_gateway.new_key(scopes=("usage",))
    assert_error(
        http.post(EMBED, json={"input_text": "a"}, headers=bearer(usage_only)), 403, "PERMISSION_DENIED"
    )
    assert http.get("/auth/profile", headers=bearer(usage_only)).status_code == 200


def test_keys_without_scopes_may_call_every_route(http: httpx.Client, authz_gateway: AuthzGateway) -> None:
    key, _ = authz_gateway.new_key()
    assert http.get("/v1/detect", headers=bearer(key)).status_code == 200
    assert http.get("/auth/profile", headers=bearer(key)).status_code == 200

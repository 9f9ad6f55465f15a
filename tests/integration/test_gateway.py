"""The walking skeleton through real Envoy: keys, limits, embeddings, probes, CORS."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import httpx

from authz_service import keys
from tests.conftest import ALLOWED_ORIGIN, TEST_RATE_LIMIT_MINUTE, Gateway

EMBED = "/v1/embed"


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_no_key_is_401_json(client: httpx.Client) -> None:
    body = assert_error(client.post(EMBED, json={"input_text": "hi"}), 401, "AUTHENTICATION_ERROR")
    assert "Missing" in body["detail"]


def test_malformed_key_is_401(client: httpx.Client) -> None:
    for headers in (bearer("sk_live_short"), bearer("pk_live_" + "a" * 40), {"Authorization": "Basic abc"}):
        body = assert_error(
            client.post(EMBED, json={"input_text": "hi"}, headers=headers), 401, "AUTHENTICATION_ERROR"
        )
        assert "Malformed" in body["detail"]


def test_unknown_well_formed_key_is_401(client: httpx.Client) -> None:
    response = client.post(EMBED, json={"input_text": "hi"}, headers=bearer("sk_live_" + "x" * 43))
    assert "Unknown" in assert_error(response, 401, "AUTHENTICATION_ERROR")["detail"]


def test_revoked_and_expired_keys_are_401(client: httpx.Client, gateway: Gateway) -> None:
    revoked = gateway.new_key()
    gateway.execute("UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1", keys.hash_key(revoked))
    response = client.post(EMBED, json={"input_text": "hi"}, headers=bearer(revoked))
    assert "revoked" in assert_error(response, 401, "AUTHENTICATION_ERROR")["detail"]
    expired = gateway.new_key(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = client.post(EMBED, json={"input_text": "hi"}, headers=bearer(expired))
    assert "expired" in assert_error(response, 401, "AUTHENTICATION_ERROR")["detail"]


def test_valid_key_gets_a_unit_norm_embedding(client: httpx.Client, gateway: Gateway) -> None:
    key = gateway.new_key()
    first = client.post(EMBED, json={"input_text": "Hello, world!"}, headers=bearer(key))
    assert first.status_code == 200, first.text
    body = first.json()
    vector = body["embedding"]
    assert len(vector) == 384 and all(isinstance(x, float) for x in vector)
    assert abs(math.sqrt(sum(x * x for x in vector)) - 1.0) < 1e-3
    assert body["model"]
    assert body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]
    again = client.post(EMBED, json={"input_text": "Hello, world!"}, headers={"X-API-Key": key})
    assert again.status_code == 200, again.text
    assert again.json()["embedding"] == vector


def test_dev_key_printed_by_authz_works(client: httpx.Client, gateway: Gateway) -> None:
    response = client.post(EMBED, json={"input_text": "dev key"}, headers=bearer(gateway.dev_key))
    assert response.status_code == 200, response.text


def test_fourth_request_in_a_minute_is_429_with_seed_body(client: httpx.Client, gateway: Gateway) -> None:
    key = gateway.new_key()
    for i in range(TEST_RATE_LIMIT_MINUTE):
        ok = client.post(EMBED, json={"input_text": f"request {i}"}, headers=bearer(key))
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-ratelimit-limit-minute"] == str(TEST_RATE_LIMIT_MINUTE)
        assert ok.headers["x-ratelimit-remaining-minute"] == str(TEST_RATE_LIMIT_MINUTE - i - 1)
    denied = client.post(EMBED, json={"input_text": "one too many"}, headers=bearer(key))
    body = assert_error(denied, 429, "RATE_LIMIT_EXCEEDED")
    retry_after = int(denied.headers["retry-after"])
    assert 1 <= retry_after <= 120
    assert body["retry_after"] == retry_after
    assert body["limit"] == TEST_RATE_LIMIT_MINUTE
    assert body["limit_type"] == "minute"
    assert body["error"] == "Rate limit exceeded"
    assert f"{TEST_RATE_LIMIT_MINUTE} requests per minute" in body["detail"]
    # The headers describe the window that denied, not one that still has room.
    assert denied.headers["x-ratelimit-limit"] == str(TEST_RATE_LIMIT_MINUTE)
    assert denied.headers["x-ratelimit-remaining"] == "0"
    assert int(denied.headers["x-ratelimit-reset"]) == retry_after


def test_limits_follow_the_authenticated_key_not_spoofed_headers(
    client: httpx.Client, gateway: Gateway
) -> None:
    victim, attacker = gateway.new_key(), gateway.new_key()
    spoof = {**bearer(attacker), "x-gateway-key-id": "someone-else"}
    for i in range(TEST_RATE_LIMIT_MINUTE):
        assert client.post(EMBED, json={"input_text": f"s{i}"}, headers=spoof).status_code == 200
    assert client.post(EMBED, json={"input_text": "s"}, headers=spoof).status_code == 429
    assert client.post(EMBED, json={"input_text": "v"}, headers=bearer(victim)).status_code == 200


def test_health_through_envoy_needs_no_key(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200, response.text
    inference = response.json()["inference_service"]
    assert inference["status"] == "healthy"
    assert inference["model"]
    assert inference["device"] in ("cpu", "cuda:0")
    assert isinstance(inference["queue_size"], int) and isinstance(inference["inflight_batches"], int)
    assert client.get("/ready").status_code == 200


def test_cors_preflight_from_allowed_origin_skips_auth(client: httpx.Client) -> None:
    preflight = {
        "Origin": ALLOWED_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    response = client.options(EMBED, headers=preflight)
    assert 200 <= response.status_code < 300, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"]


def test_cors_preflight_from_other_origin_gets_no_cors_grant(client: httpx.Client) -> None:
    response = client.options(
        EMBED, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in response.headers


def test_unknown_route_is_json_404(client: httpx.Client, gateway: Gateway) -> None:
    assert_error(client.get("/v2/nothing", headers=bearer(gateway.new_key())), 404, "NOT_FOUND")

"""The key API: POST /auth/register and GET /auth/profile through real Envoy, plus who may register.

Registration rules without Envoy use the app in-process (TestClient) on the real Postgres and Redis.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from envoy.extensions.common.ratelimit.v3.ratelimit_pb2 import RateLimitDescriptor
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest, RateLimitResponse
from fastapi.testclient import TestClient

from authz_service import keys
from authz_service.http.app import create_app
from authz_service.http.settings import HttpSettings
from authz_service.plans import builtin_plans
from ratelimit_service.config import DEFAULT_CONFIG, load_config
from ratelimit_service.usage import DEFAULT_DOMAIN, usage_entries
from tests.authz_fixtures import ADMIN_TOKEN, AuthzGateway, assert_error, bearer

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}


@pytest.fixture
def http(authz_gateway: AuthzGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=authz_gateway.url, timeout=10) as client:
        yield client


def test_register_returns_the_key_once_and_it_works(http: httpx.Client, authz_gateway: AuthzGateway) -> None:
    # Seed 003's curl: a JSON body without a JSON content type.
    response = http.post(
        "/auth/register",
        content=b'{"name":"My App","rate_limit_per_minute":70,"scopes":["embed","usage"]}',
        headers={**ADMIN, "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    key = body["api_key"]
    assert keys.is_well_formed(key) and key.startswith("sk_live_")
    assert body["id"].startswith("key_") and body["prefix"] == key[:12]
    assert (body["name"], body["plan"], body["scopes"]) == ("My App", "free", ["embed", "usage"])
    assert (body["rate_limit_per_minute"], body["rate_limit_per_hour"]) == (70, 1000)
    assert body["expires_at"] is None and body["created_at"]

    echoed = http.post("/v1/embed", json={"input_text": "hi"}, headers={"X-API-Key": key})
    assert echoed.status_code == 200 and echoed.json()["headers"]["x-gateway-key-id"] == body["id"]
    listing = authz_gateway.cli("list", "--json")
    assert listing.returncode == 0 and body["id"] in listing.stdout
    assert key not in listing.stdout and keys.hash_key(key) not in listing.stdout


@pytest.mark.parametrize(
    ("headers", "payload", "status", "code"),
    [
        ({}, {"name": "x"}, 401, "AUTHENTICATION_ERROR"),
        ({"X-Admin-Token": "guess"}, {"name": "x"}, 401, "AUTHENTICATION_ERROR"),
        (ADMIN, {"name": ""}, 422, "VALIDATION_ERROR"),
        (ADMIN, {"name": "x", "rate_limit_per_minute": -1}, 422, "VALIDATION_ERROR"),
        (ADMIN, {"name": "x", "plan": "platinum"}, 422, "VALIDATION_ERROR"),
        (ADMIN, {"name": "x", "scopes": ["everything"]}, 422, "VALIDATION_ERROR"),
    ],
)
def test_register_errors(http: httpx.Client, headers: dict, payload: dict, status: int, code: str) -> None:
    assert_error(http.post("/auth/register", json=payload, headers=headers), status, code)


def test_register_with_a_plan_scopes_and_expiry(http: httpx.Client) -> None:
    payload = {"name": "ci", "plan": "pro", "environment": "test", "expires_in": "30d", "scopes": ["usage"]}
    body = http.post("/auth/register", json=payload, headers=ADMIN).json()
    assert body["api_key"].startswith("sk_test_") and body["plan"] == "pro"
    assert (body["rate_limit_per_minute"], body["rate_limit_per_hour"]) == (600, 10_000)
    assert body["expires_at"] is not None


def charge(ratelimit_port: int, key_id: str, plan: str, hits: int) -> None:
    """Count `hits` requests for a key in the real ratelimit service, under the descriptor its
    usage report reads (Envoy sends the same one for /v1/ calls)."""
    domain = load_config(DEFAULT_CONFIG).domain(DEFAULT_DOMAIN)
    assert domain is not None
    descriptor = RateLimitDescriptor(
        entries=[RateLimitDescriptor.Entry(key=k, value=v) for k, v in usage_entries(domain, key_id, plan)]
    )
    request = RateLimitRequest(domain=DEFAULT_DOMAIN, descriptors=[descriptor], hits_addend=hits)
    with grpc.insecure_channel(f"127.0.0.1:{ratelimit_port}") as channel:
        reply = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(request, timeout=2)
    assert reply.overall_code == RateLimitResponse.OK


def test_profile_shows_the_key_its_limits_and_current_usage(
    http: httpx.Client, authz_gateway: AuthzGateway, ratelimit_port: int
) -> None:
    key, record = authz_gateway.new_key(name="profiled", plan="free")
    assert http.post("/v1/embed", json={"input_text": "a"}, headers=bearer(key)).status_code == 200
    charge(ratelimit_port, record.id, "free", 1)  # and one counted directly, under the same descriptor
    response = http.get("/auth/profile", headers=bearer(key))
    assert response.status_code == 200, response.text
    profile = response.json()
    assert (profile["id"], profile["name"], profile["plan"]) == (record.id, "profiled", "free")
    assert profile["status"] == "active" and profile["scopes"] == []
    # free plan, RATE_LIMIT_MINUTE=3; no token limit
    assert profile["limits"] == {
        "per_minute": 3,
        "per_hour": 1000,
        "tokens_per_minute": None,
        "tokens_per_day": None,
    }
    assert profile["created_at"] and profile["expires_at"] is None
    usage = profile["usage"]
    assert usage is not None, "usage counters could not be read"
    assert (usage["requests_last_minute"], usage["requests_last_hour"]) == (2, 2)
    assert (usage["remaining_minute"], usage["remaining_hour"]) == (1, 998)
    assert usage["timestamp"]


def test_profile_needs_a_key(http: httpx.Client) -> None:
    assert_error(http.get("/auth/profile"), 401, "AUTHENTICATION_ERROR")


def test_docs_are_public_and_unknown_auth_paths_are_json_404(
    http: httpx.Client, authz_gateway: AuthzGateway
) -> None:
    schema = http.get("/auth/openapi.json").json()
    assert {"/auth/register", "/auth/profile"} <= set(schema["paths"])
    for page in ("/auth/docs", "/auth/redoc"):
        response = http.get(page)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    key, _ = authz_gateway.new_key()
    assert_error(http.get("/auth/nothing", headers=bearer(key)), 404, "NOT_FOUND")
    assert_error(http.get("/auth/nothing"), 401, "AUTHENTICATION_ERROR")  # not public: needs a key


def app_client(database_url: str, redis_url: str, **settings: object) -> TestClient:
    config = HttpSettings(database_url=database_url, redis_url=redis_url, **settings)  # type: ignore[arg-type]
    return TestClient(create_app(config, builtin_plans(60, 1000)))


def test_open_registration_mints_default_plan_keys_only(database_url: str, redis_url: str) -> None:
    with app_client(database_url, redis_url, open_registration=True) as client:
        created = client.post("/auth/register", json={"name": "hobby", "rate_limit_per_minute": 10})
        assert created.status_code == 201 and created.json()["plan"] == "free"
        assert created.json()["rate_limit_per_minute"] == 10
        for payload in ({"name": "x", "plan": "pro"}, {"name": "x", "rate_limit_per_minute": 70}):
            assert_error(client.post("/auth/register", json=payload), 403, "PERMISSION_DENIED")
        assert_error(
            client.post("/auth/register", json={"name": "x"}, headers=ADMIN), 401, "AUTHENTICATION_ERROR"
        )
        metrics = client.get("/metrics").text
        assert 'authz_registrations_total{by="open"}' in metrics


def test_registration_is_off_without_a_token_or_the_flag(database_url: str, redis_url: str) -> None:
    with app_client(database_url, redis_url) as client:
        body = assert_error(client.post("/auth/register", json={"name": "x"}), 403, "PERMISSION_DENIED")
        assert "disabled" in body["detail"]

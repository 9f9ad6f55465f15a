"""The Check decision table, with the store replaced by a dict (the integration tests use Postgres)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2

from authz_service import keys
from authz_service.cache import KeyCache
from authz_service.grants import grant_for
from authz_service.model import KeyRecord, KeyStatus
from authz_service.plans import builtin_plans
from authz_service.service import AuthorizationService

NOW = datetime.now(UTC)
PLANS = builtin_plans(60, 1000)


def record(**changes: object) -> KeyRecord:
    base = KeyRecord(
        id="key_0123456789abcdef", display_prefix="sk_test_abcd", name="app", owner="acme",
        environment="test", plan="free", rate_limit_minute=None, rate_limit_hour=None, scopes=(),
        created_at=NOW, expires_at=None, revoked_at=None, last_used_at=None, replaced_by=None,
    )  # fmt: skip
    return replace(base, **changes)


class DictStore:
    """KeyLookup over a dict; `fail` makes it behave like an unreachable Postgres."""

    def __init__(self) -> None:
        self.by_hash: dict[str, KeyRecord] = {}
        self.queries = 0
        self.fail = False
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None  # when set, lookups wait for it

    async def find_by_hash(self, key_hash: str, timeout: float | None = None) -> KeyRecord | None:
        self.queries += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionRefusedError("store down")
        return self.by_hash.get(key_hash)


def request(headers: dict[str, str], path: str = "/v1/embed") -> CheckRequest:
    message = CheckRequest()
    message.attributes.request.http.path = path
    message.attributes.request.http.headers.update(headers)
    return message


def http_status(response: CheckResponse) -> int:
    if response.status.code == code_pb2.OK:
        return 200
    return response.denied_response.status.code


def body(response: CheckResponse) -> dict:
    return json.loads(response.denied_response.body)


@pytest.fixture
def setup() -> tuple[AuthorizationService, DictStore]:
    service = AuthorizationService(KeyCache(size=100, ttl=60), PLANS)
    store = DictStore()
    service.store = store
    return service, store


def add(store: DictStore, **changes: object) -> str:
    key = keys.generate_key("sk_test")
    store.by_hash[keys.hash_key(key)] = record(**changes)
    return key


async def check(
    service: AuthorizationService, headers: dict[str, str], path: str = "/v1/embed"
) -> CheckResponse:
    return await service.Check(request(headers, path), None)  # type: ignore[arg-type]


async def test_ok_sets_identity_headers_removes_credentials_and_exposes_limits(setup) -> None:
    service, store = setup
    key = add(store, rate_limit_minute=70)
    response = await check(service, {"authorization": f"Bearer {key}", "x-api-key": "ignored"})
    assert http_status(response) == 200
    headers = {h.header.key: h for h in response.ok_response.headers}
    assert headers["x-gateway-key-id"].header.value == "key_0123456789abcdef"
    assert headers["x-gateway-owner"].header.value == "acme"
    assert headers["x-gateway-plan"].header.value == "free"
    assert all(h.append_action == HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD for h in headers.values())
    assert set(response.ok_response.headers_to_remove) == {"authorization", "x-api-key"}
    metadata = MessageToDict(response.dynamic_metadata)
    assert metadata["key_id"] == "key_0123456789abcdef" and metadata["plan"] == "free"
    assert (metadata["rate_limit_minute"], metadata["rate_limit_hour"]) == (70, 1000)  # own, plan default


@pytest.mark.parametrize(
    ("headers", "status", "word"),
    [
        ({}, 401, "Missing"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, 401, "Malformed"),
        ({"authorization": "Bearer sk_live_short"}, 401, "Malformed"),
        ({"x-api-key": "pk_live_" + "a" * 43}, 401, "Malformed"),
        ({"x-api-key": "sk_live_" + "a" * 40 + "!"}, 401, "Malformed"),
        ({"authorization": "Bearer sk_live_" + "x" * 43}, 401, "Unknown"),
    ],
)
async def test_unusable_credentials(setup, headers: dict[str, str], status: int, word: str) -> None:
    service, _ = setup
    response = await check(service, headers)
    assert http_status(response) == status
    assert word in body(response)["detail"] and body(response)["code"] == "AUTHENTICATION_ERROR"


async def test_revoked_expired_rotating_and_scoped_keys(setup) -> None:
    service, store = setup
    revoked = add(store, revoked_at=NOW - timedelta(seconds=1))
    expired = add(store, expires_at=NOW - timedelta(seconds=1))
    rotating = add(store, revoked_at=NOW + timedelta(hours=1), replaced_by="key_fedcba9876543210")
    scoped = add(store, scopes=("embed",))
    assert "revoked" in body(await check(service, {"x-api-key": revoked}))["detail"]
    assert "expired" in body(await check(service, {"x-api-key": expired}))["detail"]
    assert http_status(await check(service, {"x-api-key": rotating})) == 200
    assert http_status(await check(service, {"x-api-key": scoped}, "/v1/embeddings")) == 200
    denied = await check(service, {"x-api-key": scoped}, "/auth/profile")
    assert http_status(denied) == 403
    assert body(denied)["code"] == "PERMISSION_DENIED" and "'usage'" in body(denied)["detail"]


async def test_cached_grants_expire_without_asking_the_store(setup) -> None:
    service, store = setup
    key = add(store, expires_at=datetime.now(UTC) + timedelta(milliseconds=200))
    assert http_status(await check(service, {"x-api-key": key})) == 200
    await asyncio.sleep(0.25)
    assert "expired" in body(await check(service, {"x-api-key": key}))["detail"]
    assert store.queries == 1


async def test_store_down_fails_closed_only_for_uncached_keys(setup) -> None:
    service, store = setup
    cached, uncached = add(store), add(store)
    assert http_status(await check(service, {"x-api-key": cached})) == 200
    store.fail = True
    assert http_status(await check(service, {"x-api-key": cached})) == 200
    response = await check(service, {"x-api-key": uncached})
    assert http_status(response) == 503 and body(response)["code"] == "SERVICE_UNAVAILABLE"
    store.fail = False
    assert http_status(await check(service, {"x-api-key": uncached})) == 200


async def test_unknown_keys_are_cached_and_concurrent_misses_share_one_query(setup) -> None:
    service, store = setup
    unknown = {"x-api-key": "sk_test_" + "u" * 43}
    results = await asyncio.gather(*(check(service, unknown) for _ in range(20)))
    assert {http_status(r) for r in results} == {401}
    assert store.queries == 1
    await check(service, unknown)
    assert store.queries == 1  # negative entry


async def test_invalidation_drops_a_key_and_a_racing_load_is_not_cached(setup) -> None:
    service, store = setup
    key = add(store)
    key_hash = keys.hash_key(key)
    assert http_status(await check(service, {"x-api-key": key})) == 200
    store.by_hash[key_hash] = replace(store.by_hash[key_hash], revoked_at=NOW)
    assert http_status(await check(service, {"x-api-key": key})) == 200  # still cached
    service.cache.forget(key_hash)
    assert http_status(await check(service, {"x-api-key": key})) == 401
    # A change that lands while a lookup is in flight: the answer is used once, not cached.
    other = add(store)
    store.gate, store.started = asyncio.Event(), asyncio.Event()
    pending = asyncio.ensure_future(check(service, {"x-api-key": other}))
    await store.started.wait()
    service.cache.forget(keys.hash_key(other))
    store.gate.set()
    assert http_status(await pending) == 200
    assert service.cache.lookup(keys.hash_key(other)) is KeyCache.MISS


def test_key_status() -> None:
    assert record().status() is KeyStatus.ACTIVE
    assert record(revoked_at=NOW + timedelta(hours=1)).status() is KeyStatus.ROTATING
    assert record(revoked_at=NOW - timedelta(seconds=1)).status() is KeyStatus.REVOKED
    assert record(expires_at=NOW - timedelta(seconds=1)).status() is KeyStatus.EXPIRED


def test_grant_response_is_built_once() -> None:
    grant = grant_for(record(), PLANS)
    assert grant.decide("/v1/embed", 0.0) is grant.decide("/v1/embeddings", 0.0) is grant.ok


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("10.1.2.3", True),
        ("11.0.0.1", False),
        ("::ffff:10.9.9.9", True),  # an IPv4 client seen through an IPv6 socket
        ("2001:db8::7", True),
        ("2001:db9::7", False),
        ("", False),  # no usable address (e.g. a unix socket peer): refused, not waved through
        ("not-an-address", False),
    ],
)
def test_an_allowlisted_key_is_checked_against_the_client_address(client: str, allowed: bool) -> None:
    grant = grant_for(record(allowed_ips=("10.0.0.0/8", "2001:db8::/32")), PLANS)
    response = grant.decide("/v1/embed", NOW.timestamp(), client)
    if allowed:
        assert response is grant.ok
    else:
        assert response.status.code != 0 and b"PERMISSION_DENIED" in response.denied_response.body.encode()
    anywhere = grant_for(record(), PLANS)
    assert anywhere.decide("/v1/embed", NOW.timestamp(), client) is anywhere.ok

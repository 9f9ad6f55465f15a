"""Key changes reach every authz replica within a second (Postgres LISTEN/NOTIFY), even though
the replicas cache keys for 300 s: revocation, rotation with a grace period, new keys."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf.json_format import MessageToDict

from authz_service import keys
from tests.authz_fixtures import AuthzGateway, assert_error, bearer, create_key, fetchval

EMBED = "/v1/embed"
PROPAGATION_S = 1.0


def check(port: int, key: str, path: str = EMBED) -> tuple[int, dict]:
    """Authorization/Check on one replica, directly: (HTTP status it decided, the response as a dict)."""
    request = CheckRequest()
    request.attributes.request.http.path = path
    request.attributes.request.http.headers["authorization"] = f"Bearer {key}"
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=2)
    status = 200 if reply.status.code == 0 else reply.denied_response.status.code
    return status, MessageToDict(reply)


def seconds_until(condition: Callable[[], bool], limit: float = 5.0) -> float:
    """How long `condition` took to hold (polled every 10 ms); fails after `limit`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, "condition never held"
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
def http(authz_gateway: AuthzGateway) -> httpx.Client:
    with httpx.Client(base_url=authz_gateway.url, timeout=10) as client:
        yield client


def test_revocation_reaches_both_replicas_within_a_second(
    http: httpx.Client, authz_gateway: AuthzGateway
) -> None:
    key, record = authz_gateway.new_key()
    replicas = authz_gateway.replica_ports
    for port in replicas:  # both replicas have the key cached (for 300 s)
        assert check(port, key)[0] == 200
    assert http.post(EMBED, json={"input_text": "a"}, headers=bearer(key)).status_code == 200

    revoked = authz_gateway.cli("revoke", record.id)  # the real CLI; it exits after the commit
    assert revoked.returncode == 0, revoked.stderr
    took = seconds_until(lambda: all(check(port, key)[0] == 401 for port in replicas))
    assert took < PROPAGATION_S, f"revocation took {took:.2f} s"
    for _ in range(4):  # Envoy spreads these over both replicas
        response = http.post(EMBED, json={"input_text": "b"}, headers=bearer(key))
        assert "revoked" in assert_error(response, 401, "AUTHENTICATION_ERROR")["detail"]


def test_rotation_keeps_the_old_key_for_the_grace_period_only(
    http: httpx.Client, authz_gateway: AuthzGateway
) -> None:
    old_key, old = authz_gateway.new_key(plan="pro")
    assert http.post(EMBED, json={"input_text": "a"}, headers=bearer(old_key)).status_code == 200
    rotated = authz_gateway.cli("rotate", old.id, "--grace", "3s", "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    new_key = new["api_key"]
    assert keys.is_well_formed(new_key) and new_key.startswith("sk_test_")  # same environment
    assert new["plan"] == "pro" and new["replaces"]["id"] == old.id
    for port in authz_gateway.replica_ports:  # in the grace period: both work everywhere
        assert check(port, old_key)[0] == 200
        assert check(port, new_key)[0] == 200
    time.sleep(3.2)
    for port in authz_gateway.replica_ports:
        status, reply = check(port, old_key)
        assert status == 401 and "revoked" in reply["deniedResponse"]["body"]
        assert check(port, new_key)[0] == 200
    assert http.post(EMBED, json={"input_text": "b"}, headers=bearer(new_key)).status_code == 200


def test_a_key_created_after_an_unknown_answer_works_at_once(authz_gateway: AuthzGateway) -> None:
    key = keys.generate_key("sk_test")
    for port in authz_gateway.replica_ports:  # cached as unknown (negative entry)
        status, reply = check(port, key)
        assert status == 401 and "Unknown" in reply["deniedResponse"]["body"]
    create_key(authz_gateway.database_url, key=key)
    took = seconds_until(lambda: all(check(port, key)[0] == 200 for port in authz_gateway.replica_ports))
    assert took < PROPAGATION_S


def test_metadata_carries_effective_limits_for_rate_limiting(authz_gateway: AuthzGateway) -> None:
    port = authz_gateway.replica_ports[0]
    plan_default, _ = authz_gateway.new_key()
    own_limits, record = authz_gateway.new_key(plan="pro", rate_limit_minute=7)
    metadata = check(port, plan_default)[1]["dynamicMetadata"]
    assert metadata["plan"] == "free"
    assert (metadata["rate_limit_minute"], metadata["rate_limit_hour"]) == (
        3,
        1000,
    )  # free, RATE_LIMIT_MINUTE=3
    metadata = check(port, own_limits)[1]["dynamicMetadata"]
    assert metadata["key_id"] == record.id and metadata["plan"] == "pro"
    assert (metadata["rate_limit_minute"], metadata["rate_limit_hour"]) == (7, 10_000)  # own, pro's default


def test_last_used_is_recorded_in_batches(authz_gateway: AuthzGateway) -> None:
    key, record = authz_gateway.new_key()
    query = "SELECT last_used_at FROM api_keys WHERE id = $1"
    assert fetchval(authz_gateway.database_url, query, record.id) is None
    for _ in range(5):
        assert check(authz_gateway.replica_ports[0], key)[0] == 200
    took = seconds_until(lambda: fetchval(authz_gateway.database_url, query, record.id) is not None, 3.0)
    assert took < 2.0  # replicas flush every 0.5 s in these tests

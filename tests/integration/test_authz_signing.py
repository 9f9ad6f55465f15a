"""Request signing through a real Envoy, two real authz replicas sharing a real Redis replay
cache, and the real key API and CLI. The client is the function docs/authz.md shows."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from authz_service.sealing import SecretBox, new_master_key
from tests.authz_fixtures import ADMIN_TOKEN, AuthzGateway, assert_error, fetchval, keys_cli

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "authz.md"
SignedHeaders = Callable[..., dict[str, str]]


def docs_client() -> SignedHeaders:
    """`signed_headers` exactly as docs/authz.md prints it (the block after <!-- signing-client -->)."""
    text = DOCS.read_text()
    code = re.search(r"<!-- signing-client -->\n```python\n(.*?)```", text, re.S)
    assert code is not None, "docs/authz.md lost its signing client"
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), str(DOCS), "exec"), namespace)
    return namespace["signed_headers"]  # type: ignore[return-value]


signed_headers = docs_client()


@pytest.fixture
def http(authz_gateway: AuthzGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=authz_gateway.url, timeout=10) as client:
        yield client


@pytest.fixture
def signing_key(http: httpx.Client) -> dict:
    response = http.post("/auth/register", json={"name": "signer", "signing": True}, headers=ADMIN)
    assert response.status_code == 201, response.text
    key = response.json()
    assert key["signing"] is True and key["signing_secret"].startswith("ss_")
    return key


def post(
    http: httpx.Client, key: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    sent = {"X-API-Key": key, "Content-Type": "application/json", **(headers or {})}
    return http.post(path, content=body, headers=sent)


def signature_error(response: httpx.Response, reason: str) -> dict:
    body = assert_error(response, 401, "AUTHENTICATION_ERROR")
    assert body["reason"] == f"signature_{reason}", body
    return body


BODY = json.dumps({"input_text": "signed hello"}).encode()


def test_a_correctly_signed_request_is_served_with_its_body(http: httpx.Client, signing_key: dict) -> None:
    path = "/v1/embed?trace=1"
    response = post(http, signing_key["api_key"], path, BODY, signed_headers(signing_key["signing_secret"],
                    "POST", path, BODY))  # fmt: skip
    assert response.status_code == 200, response.text
    echoed = response.json()
    assert echoed["path"] == path and echoed["headers"]["x-gateway-key-id"] == signing_key["id"]


def test_an_unsigned_request_to_a_signing_key_is_refused(http: httpx.Client, signing_key: dict) -> None:
    signature_error(post(http, signing_key["api_key"], "/v1/embed", BODY), "missing")
    only_timestamp = {"X-Signature-Timestamp": str(int(time.time()))}
    signature_error(post(http, signing_key["api_key"], "/v1/embed", BODY, only_timestamp), "missing")


@pytest.mark.parametrize("skew", [-400, 400])
def test_a_timestamp_far_from_now_is_refused(http: httpx.Client, signing_key: dict, skew: int) -> None:
    headers = signed_headers(signing_key["signing_secret"], "POST", "/v1/embed", BODY)
    stale = str(int(headers["X-Signature-Timestamp"]) + skew)
    # A correct HMAC over the stale timestamp: only the clock check can refuse it.
    text = f"{stale}.POST./v1/embed.{hashlib.sha256(BODY).hexdigest()}".encode()
    digest = hmac.new(signing_key["signing_secret"].encode(), text, hashlib.sha256).hexdigest()
    sent = {"X-Signature-Timestamp": stale, "X-Signature": f"v1={digest}"}
    signature_error(post(http, signing_key["api_key"], "/v1/embed", BODY, sent), "expired")
    garbage = {**headers, "X-Signature-Timestamp": "yesterday"}
    signature_error(post(http, signing_key["api_key"], "/v1/embed", BODY, garbage), "expired")


def test_tampering_and_a_wrong_secret_are_refused(http: httpx.Client, signing_key: dict) -> None:
    key, secret = signing_key["api_key"], signing_key["signing_secret"]
    headers = signed_headers(secret, "POST", "/v1/embed", BODY)
    tampered_body = json.dumps({"input_text": "signed hellO"}).encode()
    signature_error(post(http, key, "/v1/embed", tampered_body, headers), "mismatch")
    signature_error(post(http, key, "/v1/embeddings", BODY, headers), "mismatch")  # another path
    signature_error(post(http, key, "/v1/embed?x=1", BODY, headers), "mismatch")  # a query added
    wrong = signed_headers("ss_" + "A" * 43, "POST", "/v1/embed", BODY)
    signature_error(post(http, key, "/v1/embed", BODY, wrong), "mismatch")
    malformed = {**headers, "X-Signature": "v2=" + headers["X-Signature"][3:]}
    signature_error(post(http, key, "/v1/embed", BODY, malformed), "mismatch")


def test_each_signature_is_accepted_once_across_replicas(
    http: httpx.Client, signing_key: dict, authz_gateway: AuthzGateway
) -> None:
    headers = signed_headers(signing_key["signing_secret"], "POST", "/v1/embed", BODY)
    assert post(http, signing_key["api_key"], "/v1/embed", BODY, headers).status_code == 200
    # Envoy spreads calls over both replicas: every repeat is refused, whichever one answers.
    for _ in range(6):
        signature_error(post(http, signing_key["api_key"], "/v1/embed", BODY, headers), "replayed")


def test_get_routes_are_signed_over_an_empty_body(http: httpx.Client, signing_key: dict) -> None:
    headers = signed_headers(signing_key["signing_secret"], "GET", "/auth/profile")
    response = http.get("/auth/profile", headers={"X-API-Key": signing_key["api_key"], **headers})
    assert response.status_code == 200, response.text
    assert response.json()["signing"] is True and "signing_secret" not in response.json()


def test_a_key_without_signing_ignores_signature_headers(http: httpx.Client) -> None:
    plain = http.post("/auth/register", json={"name": "plain"}, headers=ADMIN).json()
    assert plain["signing"] is False and plain["signing_secret"] is None
    assert post(http, plain["api_key"], "/v1/embed", BODY).status_code == 200
    junk = {"X-Signature": "v1=" + "0" * 64, "X-Signature-Timestamp": "1"}
    assert post(http, plain["api_key"], "/v1/embed", BODY, junk).status_code == 200


def test_the_secret_is_stored_sealed_and_a_foreign_seal_fails_closed(
    http: httpx.Client, signing_key: dict, authz_gateway: AuthzGateway
) -> None:
    sealed = fetchval(
        authz_gateway.database_url, "SELECT signing_secret_enc FROM api_keys WHERE id = $1", signing_key["id"]
    )
    assert signing_key["signing_secret"].encode() not in sealed and len(sealed) > 40
    # Sealed under another master key (a restored backup, a wrong key file): 503, never a pass.
    foreign = SecretBox(new_master_key()).seal(signing_key["signing_secret"], signing_key["id"])
    fetchval(
        authz_gateway.database_url,
        "UPDATE api_keys SET signing_secret_enc = $2 WHERE id = $1",
        signing_key["id"],
        foreign,
    )
    deadline = time.monotonic() + 5
    while True:
        headers = signed_headers(signing_key["signing_secret"], "POST", "/v1/embed", BODY)
        response = post(http, signing_key["api_key"], "/v1/embed", BODY, headers)
        if response.status_code == 503:
            break
        assert time.monotonic() < deadline, "the changed secret never reached the replicas"
        time.sleep(0.1)
    assert_error(response, 503, "SERVICE_UNAVAILABLE")


def test_the_cli_creates_signing_keys_and_rotation_issues_a_new_secret(
    http: httpx.Client, authz_gateway: AuthzGateway
) -> None:
    made = keys_cli(authz_gateway.database_url, "generate", "--name", "cli-signer", "--signing", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["signing"] is True and key["signing_secret"].startswith("ss_")
    text = keys_cli(authz_gateway.database_url, "generate", "--name", "cli-signer-2", "--signing")
    assert "Signing secret (shown once" in text.stdout and "signing  required" in text.stdout
    rotated = json.loads(keys_cli(authz_gateway.database_url, "rotate", key["id"], "--json").stdout)
    assert rotated["signing"] is True and rotated["signing_secret"] not in (None, key["signing_secret"])
    headers = signed_headers(rotated["signing_secret"], "POST", "/v1/embed", BODY)
    assert post(http, rotated["api_key"], "/v1/embed", BODY, headers).status_code == 200
    old_secret = signed_headers(key["signing_secret"], "POST", "/v1/embed", BODY)
    signature_error(post(http, rotated["api_key"], "/v1/embed", BODY, old_secret), "mismatch")

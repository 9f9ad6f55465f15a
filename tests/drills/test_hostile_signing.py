"""Hostile signature headers against a key that signs, through the session Envoy and authz (raw
wire): each is a JSON 401 naming the failed check, never a 5xx, never a pass."""

from __future__ import annotations

import asyncio
import time

import pytest

from authz_service import keys, signing
from authz_service.sealing import SecretBox
from authz_service.store import PostgresKeyStore, new_key_id, new_signing_secret
from tests.conftest import Gateway
from tests.drills.conftest import DrillLog, Row
from tests.drills.hostile_cases import BODY, EMBED, JSON, bearer, request
from tests.drills.wire import exchange, is_error_shape
from tests.signing_keys import SIGNING_MASTER_KEY

Signer = tuple[str, str]  # (key, signing secret)


@pytest.fixture(scope="module")
def signer(gateway: Gateway, drill_log: DrillLog) -> Signer:
    key = keys.generate_key("sk_test")

    async def add() -> str:
        store = await PostgresKeyStore.connect(gateway.database_url, retry_seconds=5)
        try:
            key_id = new_key_id()
            secret, sealed = new_signing_secret(SecretBox(SIGNING_MASTER_KEY), key_id)
            await store.create_key(key, "signer", "drills", key_id=key_id, signing_secret_enc=sealed)
            return secret
        finally:
            await store.close()

    secret = asyncio.run(add())
    drill_log.keys.add(key)
    drill_log.secrets.add(secret)
    return key, secret


def signed(secret: str, body: bytes = BODY, path: bytes = EMBED, stamp: str | None = None) -> list:
    stamp = stamp or str(int(time.time()))
    value = signing.signature(secret, stamp, "POST", path.decode(), body)
    return [(b"X-Signature-Timestamp", stamp.encode()), (b"X-Signature", value.encode())]


CASES: list[tuple[str, str, object]] = [
    ("no signature headers", "missing", lambda s: []),
    ("empty signature headers", "missing",
     lambda s: [(b"X-Signature", b""), (b"X-Signature-Timestamp", b"")]),
    ("400-digit timestamp", "expired", lambda s: [*signed(s)[1:], (b"X-Signature-Timestamp", b"9" * 400)]),
    ("negative timestamp", "expired", lambda s: [*signed(s)[1:], (b"X-Signature-Timestamp", b"-1")]),
    ("float timestamp", "expired", lambda s: [*signed(s)[1:], (b"X-Signature-Timestamp", b"1.7e9")]),
    ("non-hex signature", "mismatch", lambda s: [signed(s)[0], (b"X-Signature", b"v1=" + b"z" * 64)]),
    ("UTF-8 in signature", "mismatch", lambda s: [signed(s)[0], (b"X-Signature", "v1=é".encode())]),
    ("10 KB signature", "mismatch", lambda s: [signed(s)[0], (b"X-Signature", b"v1=" + b"a" * 10_000)]),
    ("two signatures, one right", "mismatch", lambda s: [*signed(s), (b"X-Signature", b"v1=" + b"0" * 64)]),
    ("signed for another body", "mismatch", lambda s: signed(s, body=b"{}")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "reason", "headers"), CASES, ids=[c[0] for c in CASES])
def test_hostile_signature(
    name: str, reason: str, headers, gateway: Gateway, signer: Signer, drill_log: DrillLog
) -> None:  # type: ignore[no-untyped-def]
    key, secret = signer
    (response,) = exchange(gateway.url, request(b"POST", EMBED, [JSON, bearer(key), *headers(secret)], BODY))
    assert response.status == 401 and is_error_shape(response.status, response.body), response
    assert f'"reason":"signature_{reason}"' in response.body.decode(), response.body
    where = "tests/drills/test_hostile_signing.py::test_hostile_signature"
    drill_log.record(Row(f"hostile signature: {name}", f"JSON 401 signature_{reason}", "HTTP 401", where))


def test_a_signed_chunked_body_is_verified_and_then_replayed(gateway: Gateway, signer: Signer) -> None:
    """The signature covers the body Envoy buffered, however it was framed on the wire."""
    key, secret = signer
    head = request(b"POST", EMBED, [JSON, bearer(key), *signed(secret), (b"Transfer-Encoding", b"chunked")])
    head = head.replace(b"Content-Length: 0\r\n", b"", 1)
    chunked = head + b"5\r\n" + BODY[:5] + b"\r\n" + hex(len(BODY) - 5)[2:].encode() + b"\r\n" + BODY[5:]
    chunked += b"\r\n0\r\n\r\n"
    (first,) = exchange(gateway.url, chunked)
    assert first.status == 200, first
    (again,) = exchange(gateway.url, chunked)
    assert again.status == 401 and b'"reason":"signature_replayed"' in again.body

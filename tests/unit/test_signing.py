"""The pure signing rules, the sealing of secrets and the process-local replay memory."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest

from authz_service import signing
from authz_service.replay import MemoryReplayGuard, guard_from_url
from authz_service.sealing import SealingError, SecretBox, new_master_key
from authz_service.signing import SignatureProblem

SECRET = "ss_" + "s" * 43
NOW = 1_800_000_000.0
BODY = b'{"input_text": "hi"}'


def headers(secret: str = SECRET, at: float = NOW, method: str = "POST", path: str = "/v1/embed",
            body: bytes = BODY) -> dict[str, str]:  # fmt: skip
    stamp = str(int(at))
    sent = signing.signature(secret, stamp, method, path, body)
    return {"x-signature-timestamp": stamp, "x-signature": sent}


def check(sent: dict[str, str], method: str = "POST", path: str = "/v1/embed", body: bytes = BODY,
          now: float = NOW) -> SignatureProblem | None:  # fmt: skip
    return signing.check(SECRET, sent, method, path, body, now)


def test_the_signature_is_the_documented_hmac() -> None:
    text = f"{int(NOW)}.POST./v1/embed?a=1.{hashlib.sha256(BODY).hexdigest()}".encode()
    expected = "v1=" + hmac.new(SECRET.encode(), text, hashlib.sha256).hexdigest()
    assert signing.signature(SECRET, str(int(NOW)), "post", "/v1/embed?a=1", BODY) == expected


def test_a_good_signature_passes_within_the_tolerance() -> None:
    assert check(headers()) is None
    assert check(headers(), now=NOW + signing.TOLERANCE_SECONDS) is None
    assert check(headers(), now=NOW - signing.TOLERANCE_SECONDS) is None
    upper = {**headers(), "x-signature": headers()["x-signature"].upper().replace("V1=", "v1=")}
    assert check(upper) is None  # hex in either case


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        ({}, SignatureProblem.MISSING),
        ({"x-signature": "v1=" + "0" * 64}, SignatureProblem.MISSING),
        ({"x-signature-timestamp": str(int(NOW))}, SignatureProblem.MISSING),
        ({**headers(), "x-signature-timestamp": "-5"}, SignatureProblem.EXPIRED),
        ({**headers(), "x-signature-timestamp": "9" * 40}, SignatureProblem.EXPIRED),
        ({**headers(), "x-signature-timestamp": "1e9"}, SignatureProblem.EXPIRED),
        (headers(at=NOW - signing.TOLERANCE_SECONDS - 1), SignatureProblem.EXPIRED),
        (headers(at=NOW + signing.TOLERANCE_SECONDS + 1), SignatureProblem.EXPIRED),
        (headers(secret="ss_other"), SignatureProblem.MISMATCH),
        (headers(body=b"{}"), SignatureProblem.MISMATCH),
        (headers(path="/v1/embeddings"), SignatureProblem.MISMATCH),
        (headers(method="GET"), SignatureProblem.MISMATCH),
        ({**headers(), "x-signature": "v1=abc"}, SignatureProblem.MISMATCH),
        ({**headers(), "x-signature": "sha256=" + "0" * 61}, SignatureProblem.MISMATCH),
    ],
)
def test_each_broken_rule_is_named(sent: dict[str, str], problem: SignatureProblem) -> None:
    assert check(sent) is problem


def test_sealed_secrets_open_only_for_their_key_and_master_key() -> None:
    box = SecretBox(new_master_key())
    sealed = box.seal(SECRET, "key_0123456789abcdef")
    assert SECRET.encode() not in sealed
    assert box.open(sealed, "key_0123456789abcdef") == SECRET
    assert box.seal(SECRET, "key_0123456789abcdef") != sealed  # a fresh nonce each time
    with pytest.raises(SealingError, match="does not open"):
        box.open(sealed, "key_fedcba9876543210")  # copied onto another key's row
    with pytest.raises(SealingError, match="does not open"):
        SecretBox(new_master_key()).open(sealed, "key_0123456789abcdef")
    with pytest.raises(SealingError, match="not a sealed value"):
        box.open(b"plain text", "key_0123456789abcdef")


@pytest.mark.parametrize("bad", ["not base64!", "c2hvcnQ=", ""])
def test_a_bad_master_key_is_refused(bad: str) -> None:
    with pytest.raises(SealingError):
        SecretBox(bad)


def test_the_memory_guard_accepts_each_token_once() -> None:
    async def run() -> list[bool]:
        guard = MemoryReplayGuard(capacity=2)
        return [await guard.first_use(t) for t in ("a", "a", "b", "c", "a")]

    # Full at two: the oldest ("a") is forgotten once "c" arrives.
    assert asyncio.run(run()) == [True, False, True, True, True]


def test_guards_by_url() -> None:
    assert isinstance(guard_from_url(""), MemoryReplayGuard)
    assert isinstance(guard_from_url("memory://"), MemoryReplayGuard)
    with pytest.raises(ValueError, match="unsupported"):
        guard_from_url("http://127.0.0.1:6379")

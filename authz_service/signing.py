"""Request signing (opt-in per key): the pure rules, no I/O.

A signing key's requests carry

    X-Signature-Timestamp: <unix seconds>
    X-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<METHOD>.<path with query>.<hex SHA-256 of body>")>

`check` says which rule a request breaks (missing, expired, mismatch) or None; the replay
rule (each signature accepted once) needs a shared store and lives in authz_service.replay.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from enum import StrEnum

SIGNATURE_HEADER = "x-signature"
TIMESTAMP_HEADER = "x-signature-timestamp"
SCHEME = "v1="
TOLERANCE_SECONDS = 300  # a timestamp further off than this (either way) is refused
SECRET_PREFIX = "ss_"
SECRET_BYTES = 32
_HEX_DIGEST_CHARS = 64
_MAX_TIMESTAMP_CHARS = 12


class SignatureProblem(StrEnum):
    """Why a signed request is refused; the values are shown to clients (`reason`)."""

    MISSING = "missing"
    EXPIRED = "expired"
    MISMATCH = "mismatch"
    REPLAYED = "replayed"


def new_secret() -> str:
    """A signing secret to show once (`ss_` + 43 url-safe characters)."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def signed_text(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    """What is signed: timestamp, method, path with query and the body's SHA-256, dot-separated."""
    return f"{timestamp}.{method.upper()}.{path}.{hashlib.sha256(body).hexdigest()}".encode()


def signature(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The X-Signature value for a request (`v1=<hex>`)."""
    digest = hmac.new(secret.encode(), signed_text(timestamp, method, path, body), hashlib.sha256)
    return SCHEME + digest.hexdigest()


def check(
    secret: str, headers: Mapping[str, str], method: str, path: str, body: bytes, now: float
) -> SignatureProblem | None:
    """None when the request is signed with `secret` at an acceptable time, else the problem.

    `headers` has lower-case names (as Envoy sends them). The comparison is constant-time.
    """
    sent = headers.get(SIGNATURE_HEADER, "")
    stamp = headers.get(TIMESTAMP_HEADER, "")
    if not sent or not stamp:
        return SignatureProblem.MISSING
    if len(stamp) > _MAX_TIMESTAMP_CHARS or not stamp.isdigit():
        return SignatureProblem.EXPIRED  # not a unix time in seconds: no usable moment
    if abs(now - int(stamp)) > TOLERANCE_SECONDS:
        return SignatureProblem.EXPIRED
    if len(sent) != len(SCHEME) + _HEX_DIGEST_CHARS or not sent.startswith(SCHEME):
        return SignatureProblem.MISMATCH
    expected = signature(secret, stamp, method, path, body)
    if not hmac.compare_digest(expected.encode(), sent.lower().encode()):
        return SignatureProblem.MISMATCH
    return None


def replay_token(key_id: str, headers: Mapping[str, str]) -> str:
    """The name a verified signature is remembered by (per key: two keys never collide)."""
    return f"{key_id}:{headers.get(SIGNATURE_HEADER, '').lower()[len(SCHEME) :]}"

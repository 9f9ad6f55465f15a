"""Pure key logic: format, generation, hashing and extraction from request headers.

Keys look like `sk_live_<43 url-safe chars>`. Only the SHA-256 hex of the whole key is
stored; lookups go by hash, so the plaintext is never compared or kept.
The key-management CLI is `python -m authz_service.keys` (see keys/cli.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

PREFIXES = ("sk_live", "sk_test", "sk_dev")
ENVIRONMENTS = {"sk_live": "live", "sk_test": "test", "sk_dev": "dev"}
MIN_SECRET_CHARS = 32
MAX_KEY_CHARS = 128
SECRET_BYTES = 32  # token_urlsafe(32) gives 43 characters
DISPLAY_PREFIX_CHARS = 12

_KEY_RE = re.compile(rf"sk_(live|test|dev)_[A-Za-z0-9_-]{{{MIN_SECRET_CHARS},}}")


class KeyProblem(StrEnum):
    """Why a request carries no usable key; the values are safe to show to clients."""

    MISSING = "missing"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Credential:
    key: str | None
    problem: KeyProblem | None


def generate_key(prefix: str = "sk_dev") -> str:
    """A new random key with one of the known prefixes."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown key prefix {prefix!r}; use one of {', '.join(PREFIXES)}")
    return f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


def prefix_for(environment: str) -> str:
    """`sk_live` for `live`: the prefix of new keys in an environment (e.g. a rotated key's)."""
    for prefix, env in ENVIRONMENTS.items():
        if env == environment:
            return prefix
    raise ValueError(f"unknown environment {environment!r}")


def is_well_formed(key: str) -> bool:
    return len(key) <= MAX_KEY_CHARS and _KEY_RE.fullmatch(key) is not None


def environment_of(key: str) -> str:
    """`live`, `test` or `dev` for a well-formed key."""
    return ENVIRONMENTS[key[: key.index("_", 3)]]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """A short, non-secret prefix for listings (`sk_live_AbCd`)."""
    return key[:DISPLAY_PREFIX_CHARS]


def extract_key(headers: Mapping[str, str]) -> Credential:
    """Find the key in `Authorization: Bearer <key>` or `X-API-Key: <key>` (lower-case names).

    A present but unusable value is MALFORMED; a request with neither header is MISSING.
    """
    authorization = headers.get("authorization")
    api_key = headers.get("x-api-key")
    if authorization is None and api_key is None:
        return Credential(None, KeyProblem.MISSING)
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return Credential(None, KeyProblem.MALFORMED)
        candidate = value.strip()
    else:
        candidate = (api_key or "").strip()
    if not candidate:
        return Credential(None, KeyProblem.MISSING)
    if not is_well_formed(candidate):
        return Credential(None, KeyProblem.MALFORMED)
    return Credential(candidate, None)

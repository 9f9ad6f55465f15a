"""Signing secrets at rest: AES-256-GCM under a master key that lives in a file, never in Postgres.

A sealed secret is `version byte || 12-byte nonce || ciphertext+tag`, bound to its key id
(the associated data), so a sealed value copied onto another key's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_KEY_ENV = "SIGNING_MASTER_KEY"  # base64 of 32 bytes; or SIGNING_MASTER_KEY_FILE
_VERSION = b"\x01"
_NONCE_BYTES = 12


class SealingError(ValueError):
    """A master key that is not usable, or a sealed value that does not open with it."""


def new_master_key() -> str:
    """A fresh master key in the form SIGNING_MASTER_KEY takes (base64 of 32 random bytes)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def write_master_key(path: Path) -> None:
    """Create `path` (mode 0600) with a new master key unless it exists (`make run`'s default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as file:
        file.write(new_master_key() + "\n")


class SecretBox:
    def __init__(self, master_key: str) -> None:
        try:
            raw = base64.b64decode(master_key.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SealingError(f"{MASTER_KEY_ENV} is not base64") from None
        if len(raw) != 32:
            raise SealingError(f"{MASTER_KEY_ENV} must be 32 bytes (base64), got {len(raw)}")
        self._aead = AESGCM(raw)

    def seal(self, secret: str, key_id: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, secret.encode(), key_id.encode())

    def open(self, sealed: bytes, key_id: str) -> str:
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
            raise SealingError(f"the signing secret of {key_id} is not a sealed value")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, key_id.encode()).decode()
        except InvalidTag:
            raise SealingError(f"the signing secret of {key_id} does not open with this master key") from None


def box_from_setting(master_key: str) -> SecretBox | None:
    """The box for a SIGNING_MASTER_KEY value, None when it is empty (signing keys unusable)."""
    return SecretBox(master_key) if master_key else None

"""A stored API key as the rest of the service sees it (never the plaintext, never the hash)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class KeyStatus(StrEnum):
    ACTIVE = "active"
    ROTATING = "rotating"  # replaced; still works until its grace period ends
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    display_prefix: str
    name: str
    owner: str
    environment: str
    plan: str
    rate_limit_minute: int | None  # None → the plan's default
    rate_limit_hour: int | None
    scopes: tuple[str, ...]  # () → every route group
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None  # may lie in the future: the end of a rotation's grace period
    last_used_at: datetime | None
    replaced_by: str | None
    allowed_ips: tuple[str, ...] = ()  # client CIDRs the key may be used from; () → any address
    # The request-signing secret, sealed (authz_service.sealing); None: requests need no signature.
    signing_secret_enc: bytes | None = None
    # Token limits (docs/ratelimit.md#token-limits); None → the plan's (by default: none).
    token_limit_per_minute: int | None = None
    token_limit_per_day: int | None = None

    @property
    def signing(self) -> bool:
        return self.signing_secret_enc is not None

    def is_revoked(self, now: datetime | None = None) -> bool:
        return self.revoked_at is not None and self.revoked_at <= (now or datetime.now(UTC))

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    def status(self, now: datetime | None = None) -> KeyStatus:
        now = now or datetime.now(UTC)
        if self.is_revoked(now):
            return KeyStatus.REVOKED
        if self.is_expired(now):
            return KeyStatus.EXPIRED
        if self.revoked_at is not None:
            return KeyStatus.ROTATING
        return KeyStatus.ACTIVE


KEY_COLUMNS = ", ".join(KeyRecord.__slots__)  # type: ignore[attr-defined]

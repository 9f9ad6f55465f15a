"""Request and response bodies of the key API (pydantic: validation and the OpenAPI schema)."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from authz_service import scopes
from authz_service.durations import parse_duration

INT4_MAX = 2**31 - 1  # the key store's limit columns are Postgres `integer`

Label = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")


MAX_ALLOWED_NETWORKS = 64


def network_text(raw: str) -> str:
    """An IPv4/IPv6 address or CIDR in canonical form ('10.1.2.3' → '10.1.2.3/32')."""
    try:
        return str(ipaddress.ip_network(raw.strip(), strict=False))
    except ValueError:
        raise ValueError(f"{raw!r} is not an IPv4/IPv6 address or CIDR") from None


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Label
    owner: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    plan: str | None = Field(default=None, description="default: the default plan (free)")
    rate_limit_per_minute: int | None = Field(
        default=None, ge=1, le=INT4_MAX, description="default: the plan's"
    )
    rate_limit_per_hour: int | None = Field(
        default=None, ge=1, le=INT4_MAX, description="default: the plan's"
    )
    token_limit_per_minute: int | None = Field(
        default=None, ge=1, le=INT4_MAX, description="tokens per minute; default: the plan's (none: no limit)"
    )
    token_limit_per_day: int | None = Field(
        default=None, ge=1, le=INT4_MAX, description="tokens per day; default: the plan's (none: no limit)"
    )
    scopes: list[str] = Field(default_factory=list, description=f"route groups {scopes.SCOPES}; [] = all")
    environment: Literal["live", "test", "dev"] = "live"
    expires_in: str | None = Field(default=None, description="lifetime such as 30d or 12h; default: never")
    allowed_ips: list[str] = Field(
        default_factory=list,
        max_length=MAX_ALLOWED_NETWORKS,
        description="client IPv4/IPv6 addresses or CIDRs the key may be used from; [] = any",
    )
    signing: bool = Field(
        default=False,
        description="requests must be signed (X-Signature, X-Signature-Timestamp); the signing secret "
        "is returned once",
    )

    @field_validator("allowed_ips")
    @classmethod
    def valid_networks(cls, value: list[str]) -> list[str]:
        return [network_text(item) for item in value]

    @field_validator("scopes")
    @classmethod
    def known_scopes(cls, value: list[str]) -> list[str]:
        return list(scopes.parse_scopes(value))

    @field_validator("expires_in")
    @classmethod
    def valid_duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class KeyInfo(BaseModel):
    id: str
    prefix: str = Field(description="first characters of the key, safe to display")
    name: str
    owner: str
    environment: str
    plan: str
    rate_limit_per_minute: int = Field(description="effective: the key's own limit or its plan's")
    rate_limit_per_hour: int
    token_limit_per_minute: int | None = Field(default=None, description="effective; null: no token limit")
    token_limit_per_day: int | None = Field(default=None, description="effective; null: no token limit")
    scopes: list[str] = Field(description="[] = every route group")
    allowed_ips: list[str] = Field(default_factory=list, description="client networks allowed; [] = any")
    signing: bool = Field(default=False, description="whether requests must be signed")
    created_at: datetime
    expires_at: datetime | None


class RegisterResponse(KeyInfo):
    api_key: str = Field(description="the key itself: shown once, only its hash is stored")
    signing_secret: str | None = Field(
        default=None, description="signing keys only: the HMAC secret, shown once (stored encrypted)"
    )


class Limits(BaseModel):
    per_minute: int
    per_hour: int
    tokens_per_minute: int | None = Field(default=None, description="null: no token limit")
    tokens_per_day: int | None = None


class Usage(BaseModel):
    requests_last_minute: int
    requests_last_hour: int
    remaining_minute: int
    remaining_hour: int
    # Keys with a token limit only (docs/ratelimit.md#token-limits).
    tokens_last_minute: int | None = None
    tokens_last_day: int | None = None
    remaining_tokens_minute: int | None = None
    remaining_tokens_day: int | None = None
    timestamp: datetime


class MonthToDate(BaseModel):
    since: datetime = Field(description="the first of the current month, 00:00 UTC")
    requests: int
    tokens: int


class ProfileResponse(KeyInfo):
    status: str
    last_used_at: datetime | None = Field(description="updated in batches, a few seconds late")
    limits: Limits
    usage: Usage | None = Field(description="null when the rate-limit counters cannot be read")
    month_to_date: MonthToDate | None = Field(
        default=None, description="usage records (docs/usage.md), a few seconds late; null when unreadable"
    )


class ErrorBody(BaseModel):
    error: str
    detail: str
    code: str

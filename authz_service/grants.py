"""What the hot path caches per key: everything a decision needs, the OK response prebuilt.

A Grant is built once per cache fill, so a cached Check is: two header reads, one SHA-256,
one dict lookup, two float comparisons, a scope test and a prebuilt response.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz_service import responses, scopes
from authz_service.model import KeyRecord
from authz_service.plans import Plans, token_limits
from authz_service.sealing import SealingError, SecretBox
from ratelimit_service.embedded import format_token_limits

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


@dataclass(frozen=True, slots=True)
class Grant:
    key_id: str
    scopes: frozenset[str]  # empty = every route group
    revoked_at: float | None  # epoch seconds; may lie ahead (end of a rotation's grace period)
    expires_at: float | None
    ok: CheckResponse
    # For fused mode (authz_service.fused): what Envoy's rate-limit descriptor would carry.
    plan: str = ""
    own_limits: Mapping[str, int] = field(default_factory=dict)  # unit → the key's own limit
    # Client addresses the key may be used from (empty: any). Checked on the address Envoy
    # decided (its trusted X-Forwarded-For hops applied), never on one a client wrote.
    networks: tuple[IPNetwork, ...] = ()
    # Signing keys only: the HMAC secret requests are signed with (UNREADABLE when the master key
    # cannot open it: the key's requests get 503, never a pass).
    signing_secret: str | None = None
    # Fused mode: the token_limits entry of the key's token descriptor (None: no token limit).
    token_limits: str | None = None

    def decide(self, path: str, now: float, client: str = "") -> CheckResponse:
        """The response for a request to `path` at `now` (epoch seconds) made with this key from
        the client address `client`."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return responses.REVOKED_KEY
        if self.expires_at is not None and self.expires_at <= now:
            return responses.EXPIRED_KEY
        if self.networks and not address_in(client, self.networks):
            return responses.address_not_allowed(client)
        if self.scopes and not scopes.allows(self.scopes, path):
            return responses.forbidden(scopes.route_group(path), tuple(sorted(self.scopes)))
        return self.ok


UNREADABLE = ""  # the signing secret of a key whose sealed secret did not open


def grant_for(record: KeyRecord, plans: Plans, box: SecretBox | None = None) -> Grant:
    limits = plans.key_limits(record)
    return Grant(
        key_id=record.id,
        scopes=frozenset(record.scopes),
        revoked_at=_epoch(record.revoked_at),
        expires_at=_epoch(record.expires_at),
        ok=responses.allowed(record, limits),
        plan=record.plan,
        own_limits=own_limits(record),
        networks=tuple(ipaddress.ip_network(cidr, strict=False) for cidr in record.allowed_ips),
        signing_secret=signing_secret(record, box),
        token_limits=format_token_limits(token_limits(limits)),
    )


def signing_secret(record: KeyRecord, box: SecretBox | None) -> str | None:
    """The key's signing secret in plain text, None for a key that signs nothing."""
    if record.signing_secret_enc is None:
        return None
    if box is None:
        log.error("key %s requires signed requests but no SIGNING_MASTER_KEY is set", record.id)
        return UNREADABLE
    try:
        return box.open(record.signing_secret_enc, record.id)
    except SealingError as exc:
        log.error("%s", exc)
        return UNREADABLE


def address_in(client: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether `client` (an IPv4/IPv6 address; IPv4-mapped IPv6 counts as IPv4) is in a network."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False  # no usable address (a unix socket peer): an allowlisted key is refused
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def own_limits(record: KeyRecord) -> dict[str, int]:
    """The key's own limits by unit (the metadata's key_rate_limit_*): they beat the plan's."""
    found = {"minute": record.rate_limit_minute, "hour": record.rate_limit_hour}
    return {unit: limit for unit, limit in found.items() if limit is not None}

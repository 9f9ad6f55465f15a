"""Prometheus metrics of the ext_authz process (served with --metrics-port; off by default).

Children are bound once at import, so counting on the hot path is one locked add.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

DECISIONS = Counter("authz_decisions", "ext_authz decisions by result", ["result"])
OK = DECISIONS.labels("ok")
MISSING = DECISIONS.labels("missing")
MALFORMED = DECISIONS.labels("malformed")
UNKNOWN = DECISIONS.labels("unknown")
DENIED = DECISIONS.labels("revoked_expired_or_scope")
UNAVAILABLE = DECISIONS.labels("store_unavailable")
# Signing keys: one result per signature check (ok, missing, expired, mismatch, replayed, unavailable).
SIGNATURES = Counter("authz_signature_checks", "request signature checks by result", ["result"])

STORE_LOOKUPS = Counter("authz_store_lookups", "key lookups that went to Postgres (cache misses)")
STORE_ERRORS = Counter("authz_store_errors", "key lookups that failed or timed out")
INVALIDATIONS = Counter("authz_cache_invalidations", "key-change notifications received")
CACHED_KEYS = Gauge("authz_cached_keys", "keys in the positive cache")


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on a background thread (prometheus_client's own server)."""
    start_http_server(port, addr=host)

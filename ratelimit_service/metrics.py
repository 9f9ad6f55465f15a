"""Prometheus metrics of the rate-limit service (served on the HTTP port's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics

disable_created_metrics()  # no *_created series: they double every counter for no use here

DECISIONS = Counter(
    "ratelimit_decisions",
    "Rate-limit decisions per descriptor (the matched config path; values too with detailed_metric)",
    ["domain", "descriptor", "result"],
)
STORE_SECONDS = Histogram(
    "ratelimit_store_seconds",
    "Latency of one store round trip (all windows of a request)",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
STORE_ERRORS = Counter("ratelimit_store_errors", "Store calls that failed", ["error"])
LOCAL_CACHE_HITS = Counter(
    "ratelimit_local_cache_hits", "Requests denied from the local over-limit cache without a store call"
)
CONFIG_RELOADS = Counter("ratelimit_config_reloads", "Config reload attempts", ["result"])

# Results (label values) of DECISIONS.
WITHIN_LIMIT = "within_limit"
OVER_LIMIT = "over_limit"
SHADOW_OVER_LIMIT = "shadow_over_limit"
FAILURE_MODE_ALLOWED = "failure_mode_allowed"
FAILURE_MODE_DENIED = "failure_mode_denied"

_children: dict[tuple[str, str, str], Counter] = {}


def decision_counter(domain: str, descriptor: str, result: str) -> Counter:
    """DECISIONS.labels(...), looked up once per label set (labels() takes a lock)."""
    key = (domain, descriptor, result)
    child = _children.get(key)
    if child is None:
        child = _children[key] = DECISIONS.labels(domain, descriptor, result)
    return child


def count_decision(domain: str, descriptor: str, result: str) -> None:
    decision_counter(domain, descriptor, result).inc()

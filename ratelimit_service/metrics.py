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

# envoyproxy/ratelimit's per-rule stats (ratelimit.service.rate_limit.DOMAIN.KEY.STAT), named
# as its Prometheus mapping names them; `key` is its stats key without the domain (value_to_metric,
# detailed_metric and share_threshold shape it as there). They count hits (hits_addend), the
# decisions counter above counts requests.
LYFT_STATS = ("total_hits", "within_limit", "over_limit", "near_limit", "shadow_mode")
RULE_STATS = {
    stat: Counter(
        f"ratelimit_service_rate_limit_{stat}", f"envoyproxy/ratelimit's {stat} per rule", ["domain", "key"]
    )
    for stat in LYFT_STATS
}
# Which of them each decision result adds to.
RESULT_STATS = {
    WITHIN_LIMIT: ("total_hits", "within_limit"),
    OVER_LIMIT: ("total_hits", "over_limit"),
    SHADOW_OVER_LIMIT: ("shadow_mode",),
}


class Tally:
    """One (domain, descriptor, result): the decisions counter and the Lyft stats it feeds."""

    __slots__ = ("decisions", "stats")

    def __init__(self, domain: str, descriptor: str, result: str) -> None:
        self.decisions = DECISIONS.labels(domain, descriptor, result)
        self.stats = tuple(RULE_STATS[s].labels(domain, descriptor) for s in RESULT_STATS.get(result, ()))

    def inc(self, hits: int = 1) -> None:
        self.decisions.inc()
        for stat in self.stats:
            stat.inc(hits)


_children: dict[tuple[str, str, str], Tally] = {}


def decision_counter(domain: str, descriptor: str, result: str) -> Tally:
    """The Tally of one label set, looked up once (labels() takes a lock)."""
    key = (domain, descriptor, result)
    child = _children.get(key)
    if child is None:
        child = _children[key] = Tally(domain, descriptor, result)
    return child


def count_decision(domain: str, descriptor: str, result: str, hits: int = 1) -> None:
    decision_counter(domain, descriptor, result).inc(hits)


def count_near_limit(domain: str, descriptor: str, hits: int) -> None:
    RULE_STATS["near_limit"].labels(domain, descriptor).inc(hits)

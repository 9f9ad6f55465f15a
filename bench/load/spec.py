"""What a load run sends and what it measured; pure data shared by both load generators."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# Percentiles recorded for every cell: enough points to draw a latency CDF.
PERCENTILES: tuple[float, ...] = (
    *range(1, 100),
    99.5, 99.9, 99.99,
)  # fmt: skip


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request shape; with `keys`, each request carries the next key as a Bearer token."""

    method: str = "GET"
    path: str = "/"
    body: bytes = b""
    keys: tuple[str, ...] = ()
    content_type: str = "application/json"
    # Signed requests (one key that signs): one distinct request per entry, (path, timestamp,
    # X-Signature), each accepted once by the gateway, so a run needs more than it sends.
    signed: tuple[tuple[str, str, str], ...] = ()

    def headers(self, key: str | None, signature: tuple[str, str, str] | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.body:
            headers["Content-Type"] = self.content_type
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if signature is not None:
            headers["X-Signature-Timestamp"], headers["X-Signature"] = signature[1], signature[2]
        return headers

    def key_lines(self) -> list[str]:
        """What the wrk script reads: a key per line, or for signed requests key, path, timestamp and
        signature separated by tabs."""
        if self.signed:
            return ["\t".join((self.keys[0], *entry)) for entry in self.signed]
        return list(self.keys)


@dataclass(frozen=True)
class LoadResult:
    """A finished run: counts plus the latency distribution in microseconds."""

    tool: str
    concurrency: int
    requests: int
    duration_s: float
    socket_errors: int  # connect/read/write errors and timeouts
    bad_status: int  # responses with status >= 400
    latency_us: dict[float, float] = field(default_factory=dict)  # percentile -> µs
    mean_us: float = 0.0
    max_us: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def failures(self) -> int:
        return self.socket_errors + self.bad_status

    def percentile_ms(self, p: float) -> float:
        return self.latency_us.get(p, math.nan) / 1000.0

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)


def percentiles(samples_us: Sequence[float], grid: Sequence[float] = PERCENTILES) -> dict[float, float]:
    """Nearest-rank percentiles of `samples_us` (the definition wrk's histogram uses)."""
    if not samples_us:
        return {}
    ordered = sorted(samples_us)
    n = len(ordered)
    return {p: ordered[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))] for p in grid}

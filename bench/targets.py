"""The issue's targets, evaluated on figures from one run (pure: cells in, verdicts out)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.load.spec import LoadResult


@dataclass(frozen=True)
class Verdict:
    name: str
    goal: str  # what is required, in words
    measured: float | None  # None: a cell it needs is missing or failed
    limit: float
    higher_is_better: bool
    unit: str

    @property
    def status(self) -> str:
        if self.measured is None:
            return "n/a"
        ok = self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit
        return "PASS" if ok else "MISS"

    def shown(self) -> str:
        return "n/a" if self.measured is None else f"{self.measured:.2f}{self.unit}"


Results = dict[tuple[str, int], LoadResult]
# The scenarios the targets compare: measured in every round when the run has several.
COMPARED = frozenset(
    {"envoy", "noop-authz", "noop-both", "standard", "fused", "fastapi-redis"}
    | {"triton-direct", "gateway-embed"}
)


def _ratio(results: Results, a: str, b: str, c: int, metric: Callable[[LoadResult], float]) -> float | None:
    if (a, c) not in results or (b, c) not in results:
        return None
    bottom = metric(results[(b, c)])
    return metric(results[(a, c)]) / bottom if bottom else None


def _difference(
    results: Results, a: str, b: str, c: int, metric: Callable[[LoadResult], float]
) -> float | None:
    if (a, c) not in results or (b, c) not in results:
        return None
    return metric(results[(a, c)]) - metric(results[(b, c)])


def evaluate(results: Results) -> list[Verdict]:
    def rps(r: LoadResult) -> float:
        return r.rps

    return [
        Verdict(
            "standard vs do-nothing floor",
            "gateway rps >= 0.9x the two do-nothing sidecars' at c=16",
            _ratio(results, "standard", "noop-both", 16, rps), 0.9, True, "x",
        ),
        Verdict(
            "fused vs one do-nothing sidecar",
            "fused-mode gateway rps >= 0.9x one do-nothing sidecar's (ext_authz alone) at c=16",
            _ratio(results, "fused", "noop-authz", 16, rps), 0.9, True, "x",
        ),
        Verdict(
            "vs FastAPI+Redis",
            "gateway rps >= 4x the seed-style FastAPI+Redis gateway's at c=16",
            _ratio(results, "standard", "fastapi-redis", 16, rps), 4.0, True, "x",
        ),
        Verdict(
            "added p50 at c=1",
            "gateway p50 - Envoy alone p50 <= 1.3 ms at c=1",
            _difference(results, "standard", "envoy", 1, lambda r: r.p50_ms), 1.3, False, " ms",
        ),
        Verdict(
            "p99 at c=64",
            "gateway p99 <= 10x Envoy alone's at c=64",
            _ratio(results, "standard", "envoy", 64, lambda r: r.p99_ms), 10.0, False, "x",
        ),
        Verdict(
            "embeddings via gateway",
            "texts/s through the gateway >= 0.95x Triton direct at c=32",
            _ratio(results, "gateway-embed", "triton-direct", 32, rps), 0.95, True, "x",
        ),
        Verdict(
            "embeddings, 16 texts/request",
            "(extra, not an issue target) texts/s through the gateway vs Triton direct, 16 texts each, c=8",
            _ratio(results, "gateway-embed-16", "triton-direct-16", 8, rps), 0.95, True, "x",
        ),
    ]  # fmt: skip


def results_of(cells: Iterable) -> Results:
    """(scenario name, concurrency) → result, for the cells that produced numbers."""
    return {(c.scenario.name, c.concurrency): c.result for c in cells if c.result is not None}

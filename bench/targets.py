"""The issue's targets, evaluated on figures from one run (pure: cells in, verdicts out)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
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
    rounds: tuple[float, ...] = ()  # paired rounds: the figure of each (measured is their median)

    @property
    def status(self) -> str:
        if self.measured is None:
            return "n/a"
        ok = self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit
        return "PASS" if ok else "MISS"

    def shown(self) -> str:
        return "n/a" if self.measured is None else f"{self.measured:.2f}{self.unit}"


@dataclass(frozen=True)
class Target:
    """A figure of `product` against `floor` at one concurrency: a ratio, or for p50 a difference."""

    name: str
    goal: str
    product: str  # scenario names
    floor: str
    concurrency: int
    metric: str  # "rps" (ratio), "p99" (ratio) or "p50" (added milliseconds)
    limit: float
    higher_is_better: bool = True
    issue: bool = True  # False: an extra figure, not one of the issue's targets

    @property
    def unit(self) -> str:
        return " ms" if self.metric == "p50" else "x"

    def figure(self, product: LoadResult, floor: LoadResult) -> float | None:
        if self.metric == "p50":
            return product.p50_ms - floor.p50_ms
        top, bottom = (product.rps, floor.rps) if self.metric == "rps" else (product.p99_ms, floor.p99_ms)
        return top / bottom if bottom else None

    def verdict(self, measured: float | None, rounds: tuple[float, ...] = ()) -> Verdict:
        return Verdict(self.name, self.goal, measured, self.limit, self.higher_is_better, self.unit, rounds)


TARGETS: tuple[Target, ...] = (
    Target("standard vs do-nothing floor", "gateway rps >= 0.9x the two do-nothing sidecars' at c=16",
           "standard", "noop-both", 16, "rps", 0.9),
    Target("fused vs one do-nothing sidecar",
           "fused-mode gateway rps >= 0.9x one do-nothing sidecar's (ext_authz alone) at c=16",
           "fused", "noop-authz", 16, "rps", 0.9),
    Target("vs FastAPI+Redis", "gateway rps >= 4x the seed-style FastAPI+Redis gateway's at c=16",
           "standard", "fastapi-redis", 16, "rps", 4.0),
    Target("added p50 at c=1", "gateway p50 - Envoy alone p50 <= 1.3 ms at c=1",
           "standard", "envoy", 1, "p50", 1.3, higher_is_better=False),
    Target("p99 at c=64", "gateway p99 <= 10x Envoy alone's at c=64",
           "standard", "envoy", 64, "p99", 10.0, higher_is_better=False),
    Target("embeddings via gateway", "texts/s through the gateway >= 0.8x Triton direct, one text each, c=32",
           "gateway-embed", "triton-direct", 32, "rps", 0.8),
    Target("embeddings, 16 texts/request",
           "texts/s through the gateway >= 0.97x Triton direct, 16 texts per request, c=8",
           "gateway-embed-16", "triton-direct-16", 8, "rps", 0.97),
    Target("TLS vs plain HTTP", "standard path over TLS (keep-alive) >= 0.9x the same in plain HTTP at c=16",
           "standard-tls", "standard", 16, "rps", 0.9),
    Target("token limits + metering", "gateway rps with token limits (check + charge at stream done) and "
           "usage records on >= 0.9x the same path without them at c=16", "standard-metered", "standard", 16,
           "rps", 0.9),
    Target("token limits charged in batches + metering", "the same with GATEWAY_TOKEN_CHARGE=usage (the "
           "usage service charges tokens per batch, no call after the response) >= 0.9x without them at c=16",
           "standard-metered-batched", "standard", 16, "rps", 0.9),
    # Request signing and per-key IP allowlists (issue 17): what they cost next to a plain key.
    Target("signed vs unsigned", "gateway rps with signed requests (body to authz, HMAC, replay check "
           "in Redis) >= 0.8x unsigned at c=16", "standard-signed", "standard", 16, "rps", 0.8),
    Target("allowlisted vs plain key", "gateway rps with a key bound to client networks >= 0.95x a plain "
           "key's at c=16", "standard-allowlisted", "standard", 16, "rps", 0.95),
    Target("embed added p50 at c=1", "gateway /v1/embed p50 - Triton direct p50 <= 3 ms at c=1",
           "gateway-embed", "triton-direct", 1, "p50", 3.0, higher_is_better=False),
)  # fmt: skip


@dataclass(frozen=True)
class CpuTarget:
    """CPU per request of some processes of one cell, as a share of Triton's in the same cell."""

    name: str
    goal: str
    scenario: str
    concurrency: int
    processes: tuple[str, ...]  # () = every busy process but Triton
    limit: float

    def figure(self, cpu: dict[str, float]) -> float | None:
        triton = cpu.get("triton")
        if not triton:
            return None
        chosen = self.processes or tuple(name for name in cpu if name != "triton")
        return sum(cpu.get(name, 0.0) for name in chosen) / triton


CPU_TARGETS: tuple[CpuTarget, ...] = (
    CpuTarget("adapter CPU vs Triton's", "adapter CPU per request <= 0.10x Triton's, /v1/embed at c=32",
              "gateway-embed", 32, ("adapter",), 0.10),
    CpuTarget("gateway CPU vs Triton's",
              "CPU per request of all but Triton (Envoy, sidecars, Redis, adapter) <= 0.25x Triton's, c=32",
              "gateway-embed", 32, (), 0.25),
)  # fmt: skip


def cpu_verdicts(cpu: dict[tuple[str, int], dict[str, float]]) -> list[Verdict]:
    """`cpu`: (scenario, concurrency) → busy process → CPU µs per request (one run)."""
    verdicts = []
    for t in CPU_TARGETS:
        cell = cpu.get((t.scenario, t.concurrency))
        verdicts.append(Verdict(t.name, t.goal, t.figure(cell) if cell else None, t.limit, False, "x"))
    return verdicts


# The scenarios the issue's targets compare (measured again in paired rounds and --rounds).
COMPARED = frozenset(name for t in TARGETS if t.issue for name in (t.product, t.floor))

Results = dict[tuple[str, int], LoadResult]


def evaluate(results: Results) -> list[Verdict]:
    verdicts = []
    for t in TARGETS:
        product, floor = results.get((t.product, t.concurrency)), results.get((t.floor, t.concurrency))
        verdicts.append(t.verdict(t.figure(product, floor) if product and floor else None))
    return verdicts


def from_rounds(target: Target, rounds: list[tuple[LoadResult | None, LoadResult | None]]) -> Verdict:
    """A target over paired rounds (product, floor measured back to back): the median figure."""
    figures = [t for p, f in rounds if p and f and (t := target.figure(p, f)) is not None]
    return target.verdict(statistics.median(figures) if figures else None, tuple(figures))


def results_of(cells: Iterable) -> Results:
    """(scenario name, concurrency) → result, for the cells that produced numbers."""
    return {(c.scenario.name, c.concurrency): c.result for c in cells if c.result is not None}

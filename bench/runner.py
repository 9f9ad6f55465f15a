"""Run the chosen scenarios: start each setup, warm it up, measure its cells, stop it; repeat.

With several rounds, the scenarios the targets compare run again after everything else, so
that a slow minute on a shared machine hits one round and not one side of a ratio; each cell
reports the round with the median rps.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import scenarios as sc
from bench.load import pyload, wrk
from bench.load.spec import LoadResult, RequestSpec
from bench.services import Launcher, cpu_snapshot, envoy_counters
from tests.procs import Proc

# Envoy counters read around every cell: sidecar decisions, their failures, responses by class.
COUNTERS = (
    r"\.(ext_authz|ratelimit|http_local_rate_limit)\.(ok|denied|error|over_limit|failure_mode_allowed|rate_limited)$"
    r"|^http\.public\.downstream_rq_[2345]xx$"
)
LoadTool = Callable[[str, RequestSpec, int, float], LoadResult]
TOOLS: dict[str, LoadTool] = {"wrk": wrk.run, "python": pyload.run}


@dataclass
class Cell:
    scenario: sc.Scenario
    concurrency: int
    result: LoadResult | None = None
    error: str | None = None
    counters: dict[str, int] = field(default_factory=dict)  # deltas over the cell
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)  # per process we started
    warnings: list[str] = field(default_factory=list)
    round: int = 1
    round_rps: list[float] = field(default_factory=list)  # every round's rps, when repeated


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup_seconds: float
    tool: str
    concurrency_override: tuple[int, ...] = ()
    rounds: int = 1
    repeated: frozenset[str] = frozenset()  # scenarios measured in every round (the rest once)


def _count(counters: dict[str, int], suffix: str) -> int:
    # max, not sum: Envoy counts some decisions twice (per listener and per route cluster)
    return max((value for name, value in counters.items() if name.endswith(suffix)), default=0)


def check(cell: Cell) -> None:
    """Flag cells whose numbers do not mean what the scenario says (errors, skipped sidecars)."""
    result = cell.result
    if result is None:
        return
    if result.failures:
        cell.warnings.append(
            f"{result.failures} failed requests ({result.socket_errors} socket errors, "
            f"{result.bad_status} with status >= 400)"
        )
    for name in cell.scenario.calls:
        decided = _count(cell.counters, f".{name}.ok")
        if result.requests and decided < 0.99 * result.requests:
            cell.warnings.append(f"{name} said OK to only {decided} of {result.requests} requests")
        errors = _count(cell.counters, f".{name}.error")
        if errors:
            effect = "limits skipped (failure mode allow)" if name == "ratelimit" else "answered 503"
            cell.warnings.append(f"{errors} {name} calls failed or timed out: {effect}")


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        name: value - before.get(name, 0) for name, value in after.items() if value != before.get(name, 0)
    }


def measure(target: sc.Target, scenario: sc.Scenario, spec: RequestSpec, concurrency: int,
            settings: Settings, procs: dict[str, Proc]) -> Cell:  # fmt: skip
    cell = Cell(scenario, concurrency)
    before = envoy_counters(target.admin_url, COUNTERS) if target.admin_url else {}
    cpu_before = cpu_snapshot(procs)
    try:
        cell.result = TOOLS[settings.tool](target.url, spec, concurrency, settings.seconds)
    except Exception as exc:  # one broken cell must not lose the rest of the run
        cell.error = f"{type(exc).__name__}: {exc}"
        return cell
    cpu_after = cpu_snapshot(procs)
    if cell.result.requests:
        cell.cpu_us_per_request = {
            name: round((cpu_after[name] - used) / cell.result.requests * 1e6, 1)
            for name, used in cpu_before.items()
            if name in cpu_after and cpu_after[name] > used
        }
    if target.admin_url:
        cell.counters = _delta(before, envoy_counters(target.admin_url, COUNTERS))
    check(cell)
    return cell


def busy_processes(cell: Cell) -> dict[str, float]:
    """CPU µs/request of the processes that worked for this cell (idle ones only tick health checks)."""
    cpu = cell.cpu_us_per_request
    floor = max(10.0, 0.02 * max(cpu.values(), default=0.0))
    return {name: us for name, us in cpu.items() if us >= floor}


def describe(cell: Cell, floor: Cell | None) -> str:
    title = f"{cell.scenario.title:<34} c={cell.concurrency:<3}"
    if cell.result is None:
        return f"{title} FAILED: {cell.error}"
    r = cell.result
    line = f"{title} {r.rps:>9,.0f} rps   p50 {r.p50_ms:7.2f} ms   p99 {r.p99_ms:8.2f} ms"
    if floor is not None and floor.result is not None and floor is not cell and floor.result.rps:
        line += f"   {r.rps / floor.result.rps:5.2f}x {floor.scenario.name}"
        added = r.p50_ms - floor.result.p50_ms
        if not math.isnan(added):
            line += f" (p50 {added:+.2f} ms)"
    busy = busy_processes(cell)
    if busy:
        line += "\n    CPU µs/request: " + ", ".join(f"{name} {us:.0f}" for name, us in busy.items())
    return line + "".join(f"\n    ! {w}" for w in cell.warnings)


def _grouped(chosen: Iterable[sc.Scenario]) -> dict[str, list[sc.Scenario]]:
    setups: dict[str, list[sc.Scenario]] = {}
    for scenario in chosen:
        setups.setdefault(scenario.setup, []).append(scenario)
    return setups


def start_setup(
    name: str, scenarios: list[sc.Scenario], shared: sc.Shared, own: Launcher, settings: Settings
) -> tuple[sc.Target, list[str]]:
    """Start a setup and warm it up with its first scenario's requests: (target, keys to send)."""
    target = sc.SETUPS[name](shared, own)
    keys = shared.keys if any(s.keys for s in scenarios) else []
    if settings.warmup_seconds > 0:
        TOOLS[settings.tool](target.url, shared.spec(scenarios[0], keys), 16, settings.warmup_seconds)
    return target, keys


def _rps(cell: Cell) -> float:
    return cell.result.rps if cell.result is not None else 0.0


def median_cells(cells: list[Cell]) -> list[Cell]:
    """One cell per (scenario, concurrency): the round with the median rps, knowing every round's."""
    rounds: dict[tuple[str, int], list[Cell]] = {}
    for cell in cells:
        rounds.setdefault((cell.scenario.name, cell.concurrency), []).append(cell)
    chosen = []
    for same in rounds.values():
        measured = sorted((c for c in same if c.result is not None), key=_rps)
        if len(same) == 1 or not measured:
            chosen.append(same[0])
            continue
        median = measured[(len(measured) - 1) // 2]
        every = [_rps(c) for c in same if c.result is not None]
        failed = len(same) - len(measured)
        warnings = [*median.warnings, *([f"{failed} of {len(same)} rounds failed"] if failed else [])]
        chosen.append(replace(median, round_rps=every, warnings=warnings))
    return chosen


def run(
    chosen: list[sc.Scenario], settings: Settings, run_dir: Path, log: Callable[[str], None] = print,
    then: Callable[[sc.Shared], None] | None = None,
) -> list[Cell]:  # fmt: skip
    """Measure every chosen cell; `then` runs while the shared processes are still up."""
    cells: list[Cell] = []
    shared_launcher = Launcher(run_dir)
    shared = sc.Shared(shared_launcher, max((s.keys for s in chosen), default=1))
    try:
        for round_no in range(1, settings.rounds + 1):
            scenarios = chosen if round_no == 1 else [s for s in chosen if s.name in settings.repeated]
            if round_no > 1 and scenarios:
                log(f"-- round {round_no} of {settings.rounds}: {', '.join(s.name for s in scenarios)}")
            cells += _round(scenarios, round_no, settings, run_dir, shared, log)
        if then is not None:
            then(shared)
    finally:
        shared_launcher.close()
    return median_cells(cells)


def _round(
    chosen: list[sc.Scenario], round_no: int, settings: Settings, run_dir: Path, shared: sc.Shared,
    log: Callable[[str], None],
) -> list[Cell]:  # fmt: skip
    cells: list[Cell] = []
    shared_launcher = shared.launcher

    def floor_of(cell: Cell) -> Cell | None:
        return next(
            (
                c
                for c in cells
                if c.scenario.name == cell.scenario.floor and c.concurrency == cell.concurrency
            ),
            None,
        )

    for setup_name, group in _grouped(chosen).items():
        own = Launcher(run_dir / f"{setup_name}-{round_no}" if round_no > 1 else run_dir / setup_name)
        pending = [(s, c) for s in group for c in (settings.concurrency_override or s.concurrencies)]
        try:
            log(f"-- starting {setup_name}")
            target, keys = start_setup(setup_name, group, shared, own, settings)
            while pending:
                scenario, concurrency = pending.pop(0)
                procs = {**shared_launcher.procs, **own.procs}
                cell = measure(target, scenario, shared.spec(scenario, keys), concurrency, settings, procs)
                cell.round = round_no
                cells.append(cell)
                log(describe(cell, floor_of(cell)))
        except Exception as exc:
            error_file = run_dir / f"error-{setup_name}.txt"
            error_file.write_text(traceback.format_exc())
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log(f"setup {setup_name} failed: {reason} (details: {error_file})")
            for scenario, concurrency in pending:
                cells.append(Cell(scenario, concurrency, error=f"setup failed: {reason}", round=round_no))
        finally:
            own.close()
    return cells

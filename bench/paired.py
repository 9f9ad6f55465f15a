"""Paired rounds for the targets: each target's two sides measured back to back, several times.

On a shared 2-core VM one cell's rps moves by ±30% from one minute to the next, more than the
margins the targets are about, so a ratio of two cells taken minutes apart says little. Here
every setup the targets compare stays up for the whole phase; each round measures the product
and its floor one right after the other (alternating which goes first), and a target's figure
is the median over rounds of its per-round figure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench import runner, targets
from bench import scenarios as sc
from bench.load.spec import LoadResult
from bench.services import Launcher

Sides = tuple[LoadResult | None, LoadResult | None]  # (product, floor) of one round


class Phase:
    """The setups of the chosen targets, all up at once, and how to measure one side."""

    def __init__(self, settings: runner.Settings, run_dir: Path, shared: sc.Shared) -> None:
        self.settings, self.run_dir, self.shared = settings, run_dir, shared
        self.launchers: dict[str, Launcher] = {}
        self.setups: dict[str, tuple[sc.Target, list[str]]] = {}  # setup → (target, keys)

    def start(self, names: set[str], log: Callable[[str], None]) -> None:
        for setup in sorted({sc.BY_NAME[n].setup for n in names}):
            log(f"-- paired: starting {setup}")
            scenarios = [sc.BY_NAME[n] for n in sorted(names) if sc.BY_NAME[n].setup == setup]
            self.launchers[setup] = own = Launcher(self.run_dir / f"paired-{setup}")
            self.setups[setup] = runner.start_setup(setup, scenarios, self.shared, own, self.settings)

    def measure(self, name: str, concurrency: int) -> LoadResult | None:
        scenario = sc.BY_NAME[name]
        procs = dict(self.shared.launcher.procs)
        for launcher in self.launchers.values():
            procs.update(launcher.procs)
        target, keys = self.setups[scenario.setup]
        spec = self.shared.spec(scenario, keys)
        return runner.measure(target, scenario, spec, concurrency, self.settings, procs).result

    def round(self, target: targets.Target, product_first: bool) -> Sides:
        order = [target.product, target.floor] if product_first else [target.floor, target.product]
        results = {name: self.measure(name, target.concurrency) for name in order}
        return results[target.product], results[target.floor]

    def close(self) -> None:
        for launcher in self.launchers.values():
            launcher.close()


def run(
    chosen: list[targets.Target], settings: runner.Settings, rounds: int, run_dir: Path, shared: sc.Shared,
    log: Callable[[str], None] = print,
) -> list[targets.Verdict]:  # fmt: skip
    phase = Phase(settings, run_dir, shared)
    measured: dict[str, list[Sides]] = {t.name: [] for t in chosen}
    try:
        phase.start({name for t in chosen for name in (t.product, t.floor)}, log)
        for round_no in range(rounds):
            for target in chosen:
                measured[target.name].append(phase.round(target, product_first=round_no % 2 == 0))
                this_round = targets.from_rounds(target, measured[target.name][-1:])
                log(f"paired round {round_no + 1}/{rounds}: {target.name}: {this_round.shown()}")
    finally:
        phase.close()
    return [targets.from_rounds(t, measured[t.name]) for t in chosen]

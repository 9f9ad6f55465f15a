"""`python -m bench`: measure the gateway against its floors and baselines in one run.

Starts every process itself on free loopback ports (Envoy, a native-speed upstream, the real
sidecars with Postgres and Redis, do-nothing sidecars, a seed-style FastAPI gateway, Triton),
loads each scenario with wrk for a fixed time per concurrency, and writes
<out>/<name>.json/.csv/.md plus PNG plots. Ratios are only meaningful within one run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bench import plots, report, runner, targets
from bench import scenarios as sc
from bench.load import wrk
from bench.paired import run as paired_run
from bench.services import fresh_run_dir
from common.settings import add_option, non_negative_int, positive_int

ROOT = Path(__file__).resolve().parent.parent


def _names(raw: str) -> list[str]:
    return [n.strip() for n in raw.split(",") if n.strip()]


def _levels(raw: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(n) for n in _names(raw))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {raw!r}") from None
    if any(n < 1 for n in levels):
        raise argparse.ArgumentTypeError(f"concurrency must be >= 1, got {raw!r}")
    return levels


def _seconds(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {raw}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0],
        epilog="Scenarios: " + ", ".join(s.name for s in sc.SCENARIOS) + ". See bench/README.md.",
    )  # fmt: skip
    add_option(parser, "--seconds", "BENCH_SECONDS", 5.0, "load time per cell", _seconds)
    add_option(
        parser, "--warmup", "BENCH_WARMUP", 1.0, "unrecorded load on each setup before its cells", _seconds
    )
    add_option(
        parser, "--rounds", "BENCH_ROUNDS", 1,
        "measure the scenarios the targets compare this many times, interleaved with the others, "
        "and report each cell's median-rps round (1: everything once)", positive_int,
    )  # fmt: skip
    add_option(
        parser, "--paired-rounds", "BENCH_PAIRED_ROUNDS", 4,
        "then measure each target's two sides back to back this many times and judge the target "
        "on the median (0: judge on the cells above)", non_negative_int,
    )  # fmt: skip
    add_option(parser, "--paired-seconds", "BENCH_PAIRED_SECONDS", 4.0, "load time per paired cell", _seconds)
    add_option(parser, "--scenarios", "BENCH_SCENARIOS", "all", "comma-separated scenarios to run, or 'all'")
    add_option(parser, "--skip", "BENCH_SKIP", "", "comma-separated scenarios to leave out")
    add_option(
        parser, "--concurrency", "BENCH_CONCURRENCY", "", "use these levels for every scenario", _levels
    )
    add_option(
        parser, "--load-tool", "BENCH_LOAD_TOOL", "wrk", "wrk, or python (no wrk; only proves the harness)"
    )
    add_option(
        parser, "--out", "BENCH_OUT", str(ROOT / "bench" / "results"), "folder for results and plots", Path
    )
    add_option(parser, "--name", "BENCH_NAME", "bench", "file name stem of the results")
    add_option(parser, "--label", "BENCH_LABEL", "", "note stored with the results, e.g. 'machine shared'")
    add_option(
        parser, "--run-dir", "BENCH_RUN_DIR", str(ROOT / ".run" / "bench"), "process logs (wiped first)", Path
    )
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or ()
    wanted = [s.name for s in sc.SCENARIOS] if args.scenarios == "all" else _names(args.scenarios)
    unknown = [n for n in [*wanted, *_names(args.skip)] if n not in sc.BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(sc.BY_NAME)}")
    args.chosen = [sc.BY_NAME[n] for n in wanted if n not in _names(args.skip)]
    if not args.chosen:
        parser.error("no scenario left to run")
    if args.load_tool not in runner.TOOLS:
        parser.error(f"--load-tool must be one of {', '.join(runner.TOOLS)}, got {args.load_tool!r}")
    if "/" in args.name:
        parser.error("--name is a file name stem, not a path (use --out for the folder)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.load_tool == "wrk" and wrk.wrk_binary() is None:
        sys.exit(f"bench: {wrk.INSTALL_HINT}")
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    fresh_run_dir(args.run_dir)
    settings = runner.Settings(
        args.seconds, args.warmup, args.load_tool, args.concurrency, args.rounds, targets.COMPARED
    )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"bench: {len(args.chosen)} scenarios, {args.seconds:g} s per cell, load tool {args.load_tool}; "
          f"logs in {args.run_dir}", flush=True)  # fmt: skip
    log = lambda line: print(line, flush=True)  # noqa: E731
    names = {s.name for s in args.chosen}
    pairable = [t for t in targets.TARGETS if t.issue and {t.product, t.floor} <= names]
    paired: list[targets.Verdict] = []

    def paired_phase(shared: sc.Shared) -> None:
        if args.paired_rounds and pairable:
            phase = replace(settings, seconds=args.paired_seconds)
            paired.extend(paired_run(pairable, phase, args.paired_rounds, args.run_dir, shared, log))

    cells = runner.run(args.chosen, settings, args.run_dir, log=log, then=paired_phase)
    cpu = {(c.scenario.name, c.concurrency): runner.busy_processes(c) for c in cells if c.result is not None}
    cpu_verdicts = targets.cpu_verdicts(cpu)
    verdicts = targets.evaluate(targets.results_of(cells)) + cpu_verdicts
    info = report.RunInfo(
        command, args.label, started, datetime.now(UTC).isoformat(timespec="seconds"),
        {"seconds": args.seconds, "warmup": args.warmup, "load_tool": args.load_tool, "rounds": args.rounds,
         "paired_rounds": args.paired_rounds, "paired_seconds": args.paired_seconds,
         "concurrency_override": list(args.concurrency), "scenarios": [s.name for s in args.chosen]},
    )  # fmt: skip
    made = plots.draw(cells, args.out, args.name, args.label)
    written = report.write(args.out, args.name, info, cells, verdicts, made, paired)
    print("\n" + report.targets_table([*paired, *cpu_verdicts] if paired else verdicts))
    print("\nwrote " + ", ".join(str(p) for p in [*written, *made]))
    if all(c.result is None for c in cells):
        sys.exit("bench: no scenario produced numbers (see the errors above)")


if __name__ == "__main__":
    main()

"""`python -m bench.profile`: where the real sidecars spend CPU under load (py-spy, no code changes).

Starts the standard gateway (Envoy + authz_service + ratelimit_service + Postgres + Redis +
the tiny upstream), loads it with wrk, and samples both sidecars with `py-spy record` at the
same time. Writes <out>/<name>.md (CPU share per layer and the hottest frames) and one
collapsed-stack file per sidecar in --run-dir (open it in speedscope.app or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import scenarios as sc
from bench.load import wrk
from bench.services import Launcher, cpu_snapshot, fresh_run_dir
from common.settings import add_option

ROOT = Path(__file__).resolve().parent.parent
SIDECARS = ("authz-0", "ratelimit-0")
# Without --native, py-spy cannot see inside C/Cython code: a sample whose innermost Python
# frame is one of these is C work (or waiting) started from there.
INNERMOST: tuple[tuple[str, str], ...] = (
    ("Handle._run (asyncio/events.py", "event-loop callbacks into C (grpc.aio's Cython)"),
    ("Thread.run (threading.py", "C threads (grpc core polling/transport)"),
    ("select (selectors.py", "asyncio selector (epoll)"),
)
# Otherwise a sample is charged to the first layer found walking outwards from the innermost frame.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("service code", ("authz_service/", "ratelimit_service/", "common/")),
    ("protobuf", ("google/protobuf", "_pb2", "upb")),
    ("redis client", ("redis/", "hiredis")),
    ("asyncpg", ("asyncpg/",)),
    ("logging", ("logging/",)),
    ("gRPC (grpc.aio + core)", ("grpc/", "grpc_", "cygrpc", "grpc::")),
    ("asyncio event loop", ("asyncio/", "selectors.py", "uvloop")),
)


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw format: `frame;frame;…;innermost count` per line."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def layer_of(frames: list[str]) -> str:
    for prefix, name in INNERMOST:
        if frames[-1].startswith(prefix):
            return name
    for frame in reversed(frames):
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def summarize(stacks: list[tuple[list[str], int]], top: int = 12) -> tuple[Counter[str], Counter[str], int]:
    """(samples per layer, samples per innermost frame, total samples)."""
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        layers[layer_of(frames)] += count
        leaves[frames[-1]] += count
    return layers, Counter(dict(leaves.most_common(top))), sum(layers.values())


def report(name: str, stacks: list[tuple[list[str], int]]) -> str:
    layers, leaves, total = summarize(stacks)
    if not total:
        return f"## {name}\n\nno samples (was the process busy? does py-spy have ptrace rights?)\n"
    lines = [f"## {name} ({total} samples while busy)", "", "| layer | share |", "|---|---:|"]
    lines += [f"| {layer} | {count / total:.0%} |" for layer, count in layers.most_common()]
    lines += ["", "| hottest innermost frames | share |", "|---|---:|"]
    lines += [f"| `{frame}` | {count / total:.1%} |" for frame, count in leaves.most_common()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    add_option(parser, "--seconds", "BENCH_SECONDS", 15, "sampling time under load", int)
    add_option(parser, "--concurrency", "BENCH_PROFILE_CONCURRENCY", 16, "wrk connections", int)
    add_option(
        parser,
        "--native",
        "BENCH_PROFILE_NATIVE",
        "off",
        "on|off: include C/C++ frames (pauses the process per sample)",
        str,
    )
    add_option(parser, "--out", "BENCH_OUT", str(ROOT / "bench" / "results"), "output folder", Path)
    add_option(parser, "--name", "BENCH_PROFILE_NAME", "profile_sidecars", "output file stem")
    add_option(parser, "--label", "BENCH_LABEL", "", "note stored with the results, e.g. 'machine shared'")
    add_option(
        parser, "--run-dir", "BENCH_RUN_DIR", str(ROOT / ".run" / "bench-profile"), "process logs", Path
    )
    args = parser.parse_args(argv)
    pyspy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if pyspy is None:
        sys.exit("bench.profile: py-spy is not installed (pip install py-spy; it needs ptrace rights)")
    if wrk.wrk_binary() is None:
        sys.exit(f"bench.profile: {wrk.INSTALL_HINT}")
    fresh_run_dir(args.run_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    launcher = Launcher(args.run_dir)
    try:
        shared = sc.Shared(launcher, 1)
        target = sc.SETUPS["standard"](shared, launcher)
        spec = sc.BY_NAME["standard"].spec(shared.keys)
        wrk.run(target.url, spec, args.concurrency, 2)  # warm up: connections, caches
        samplers = {}
        for name in SIDECARS:
            collapsed = args.run_dir / f"{name}.collapsed"
            # --native unwinds C/C++ frames too, which needs the process paused for each sample.
            mode = ["--native"] if args.native == "on" else ["--nonblocking"]
            command = [pyspy, "record", "--pid", str(launcher.procs[name].popen.pid), "--duration",
                       str(args.seconds), "--rate", "200", "--format", "raw", "--output", str(collapsed),
                       *mode]  # fmt: skip
            samplers[name] = (
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                collapsed,
            )
        before = cpu_snapshot(launcher.procs)
        load = wrk.run(target.url, spec, args.concurrency, args.seconds + 1)
        after = cpu_snapshot(launcher.procs)
        cpu = {n: (after[n] - before[n]) / max(1, load.requests) * 1e6 for n in before if n in after}
        sections = [
            f"# Sidecar CPU profile (py-spy, {args.seconds} s under wrk c={args.concurrency})"
            + (f" ({args.label})" if args.label else ""),
            f"Load during sampling: {load.rps:,.0f} rps, p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, "
            f"{load.failures} failed. Command: `python -m bench.profile {shlex.join(argv or sys.argv[1:])}`",
            "CPU per request (µs, /proc, sampler overhead included): "
            + ", ".join(f"{n} {us:.0f}" for n, us in cpu.items() if us >= 1),
        ]
        for name, (sampler, collapsed) in samplers.items():
            _, err = sampler.communicate(timeout=args.seconds + 60)
            if sampler.returncode != 0 or not collapsed.exists():
                sections.append(f"## {name}\n\npy-spy failed: {err.decode(errors='replace')[-500:]}")
                continue
            sections.append(report(name, parse_collapsed(collapsed.read_text())))
    finally:
        launcher.close()
    path = args.out / f"{args.name}.md"
    path.write_text("\n\n".join(sections) + "\n")
    print(path.read_text())


if __name__ == "__main__":
    main()

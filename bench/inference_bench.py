"""Inference throughput: the adapter vs tritonclient straight to Triton, and dynamic batching on vs off.

`python -m bench.inference_bench` starts two Tritons (`python -m inference.triton`, one with
`--dynamic-batching off`) and an adapter on free loopback ports, then runs closed-loop load for a
fixed time per cell (bench/inference_load.py). Every cell is repeated `--rounds` times,
interleaved with the cells it is compared with, and medians are reported: the machine may be
shared, so compare ratios within one run only.

1. one text per request at concurrency 1/8/32: tritonclient.grpc.aio straight to Triton vs
   `POST /v1/embed` through the adapter (a tiny keep-alive HTTP/1.1 client keeps the load
   generator's own CPU small); adapter ÷ direct, goal >= 0.95;
2. the same direct load with dynamic batching off; on ÷ off;
3. a list of 16 texts per call (`/v1/embeddings`): one batched Triton request vs one per text;
4. with `--delays 0,500,2000`: direct load against one Triton per max_queue_delay_microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc.aio import InferenceServerClient

from bench.inference_load import HttpPool, adapter_call, direct_call, list_call, ratio, row, show, sweep
from common.settings import add_option
from inference.adapter.triton_client import TritonEmbedder

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"error: {proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"error: {url} not ready after {timeout} s")


def start(module: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(30)


@dataclass
class Triton:
    proc: subprocess.Popen[bytes]
    grpc_url: str
    metrics_url: str


def start_triton(work: Path, device: str, *extra: str) -> Triton:
    work.mkdir(parents=True, exist_ok=True)
    http, grpc, metrics = free_port(), free_port(), free_port()
    args = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    proc = start(
        "inference.triton",
        [*args, "--work-dir", str(work), "--device", device, *extra],
        work / "triton.log",
    )
    wait_http_ok(f"http://127.0.0.1:{http}/v2/health/ready", proc)
    return Triton(proc, f"127.0.0.1:{grpc}", f"http://127.0.0.1:{metrics}/metrics")


def levels_of(raw: str) -> list[int]:
    return [int(n) for n in raw.split(",") if n.strip()]


async def run(args: argparse.Namespace, work: Path) -> None:
    levels = levels_of(args.concurrency)
    on = start_triton(work / "on", args.device)
    off = start_triton(work / "off", args.device, "--dynamic-batching", "off")
    port = free_port()
    adapter_args = [
        "--port",
        str(port),
        "--triton-grpc-url",
        on.grpc_url,
        "--triton-metrics-url",
        on.metrics_url,
    ]
    adapter = start("inference.adapter", [*adapter_args, "--log-level", "warning"], work / "adapter.log")
    clients = [InferenceServerClient(on.grpc_url), InferenceServerClient(off.grpc_url)]
    pool = HttpPool(port)
    embedder = TritonEmbedder(on.grpc_url, "embedder")
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/ready", adapter, 30)
        await embedder.start()
        paths = {
            "direct": direct_call(clients[0]),
            "adapter": adapter_call(pool),
            "off": direct_call(clients[1]),
        }
        one = await sweep(paths, levels, args.rounds, args.seconds)
        lists_paths = {"batched": list_call(embedder, True), "per_text": list_call(embedder, False)}
        lists = await sweep(lists_paths, [4], args.rounds, args.seconds)
    finally:
        pool.close()
        for client in clients:
            await client.close()
        await embedder.close()
        for proc in (adapter, on.proc, off.proc):
            stop(proc)

    print(f"# inference bench: {args.rounds} rounds x {args.seconds:.0f} s a cell, {os.cpu_count()} CPUs\n")
    print("## 1. one text per request, requests/s (median of rounds): adapter vs straight to Triton\n")
    print(row("concurrency", "direct tritonclient", "adapter POST /v1/embed", "adapter ÷ direct"))
    print(row("---", "---", "---", "---"))
    for c in levels:
        direct, via = one["direct", c], one["adapter", c]
        print(row(c, show(direct), show(via), ratio(via, direct)))
    print("\n## 2. dynamic batching on vs off, direct, requests/s\n")
    print(row("concurrency", "batching on", "batching off", "on ÷ off"))
    print(row("---", "---", "---", "---"))
    for c in levels:
        print(row(c, show(one["direct", c]), show(one["off", c]), ratio(one["direct", c], one["off", c])))
    print("\n## 3. a list of 16 texts per call (the /v1/embeddings path), 4 callers, texts/s\n")
    print(row("strategy", "texts/s (p50 / p99 per list)", "÷ one request per text"))
    print(row("---", "---", "---"))
    batched, per_text = lists["batched", 4], lists["per_text", 4]
    print(row("one Triton request of 16 (chosen)", show(batched, 16), ratio(batched, per_text)))
    print(row("16 concurrent requests of 1", show(per_text, 16), "1"), flush=True)


async def run_delays(args: argparse.Namespace, work: Path) -> None:
    levels, delays = levels_of(args.concurrency), [d.strip() for d in args.delays.split(",")]
    tritons = {d: start_triton(work / f"delay{d}", args.device, "--max-queue-delay-us", d) for d in delays}
    clients = {d: InferenceServerClient(t.grpc_url) for d, t in tritons.items()}
    try:
        results = await sweep(
            {d: direct_call(c) for d, c in clients.items()}, levels, args.rounds, args.seconds
        )
    finally:
        for client in clients.values():
            await client.close()
        for triton in tritons.values():
            stop(triton.proc)
    base = delays[-1]
    print(f"\n## 4. max_queue_delay_microseconds, direct, requests/s (÷ {base} µs)\n")
    print(row("concurrency", *(f"{d} µs" for d in delays)))
    print(row("---", *("---" for _ in delays)))
    for c in levels:
        cells = [f"{show(results[d, c])} ÷ {ratio(results[d, c], results[base, c])}" for d in delays]
        print(row(c, *cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inference_bench", description=__doc__.splitlines()[0]
    )
    add_option(parser, "--seconds", "BENCH_SECONDS", 4.0, "measured seconds per cell", float)
    add_option(parser, "--rounds", "BENCH_ROUNDS", 3, "interleaved repetitions of every cell", int)
    add_option(parser, "--concurrency", "BENCH_CONCURRENCY", "1,8,32", "comma-separated concurrency levels")
    add_option(parser, "--device", "BENCH_DEVICE", "cpu", "Triton --device: cpu, gpu or auto")
    add_option(
        parser, "--delays", "BENCH_DELAYS", "", "queue delays to compare in µs, e.g. 0,500,2000 (empty: skip)"
    )
    args = parser.parse_args(argv)
    try:  # both are lists of integers
        levels_of(args.concurrency)
        levels_of(args.delays)
    except ValueError:
        parser.error(
            f"--concurrency and --delays take comma-separated integers: {args.concurrency!r} {args.delays!r}"
        )
    with tempfile.TemporaryDirectory(prefix="inference-bench-") as tmp:
        asyncio.run(run(args, Path(tmp)))
        if args.delays:
            asyncio.run(run_delays(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

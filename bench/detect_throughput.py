"""Detection throughput: `POST /v1/detect/batch` vs one text per `POST /v1/detect`, and vs Triton direct.

`python -m bench.detect_throughput` starts a Triton with the `detector` ensemble
(`python -m inference.triton --model detector`) and an adapter serving the detection routes on free
loopback ports, then runs closed-loop load for a fixed time per cell; every cell is repeated
`--rounds` times, interleaved with the cells it is compared with, and the median is reported.
Texts are the corpus's own examples (inference/detection/corpus), so lengths are realistic
(5-60 words). The machine is shared with other engineers' tests: compare ratios within one run.

1. texts/s: Triton's `detector` straight through tritonclient (batch requests) vs the adapter's
   `/v1/detect/batch` with the same batch size and callers (adapter ÷ direct);
2. texts/s: `/v1/detect/batch` vs `/v1/detect` one text per request with more callers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import orjson
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from bench.inference_bench import free_port, start, start_triton, stop, wait_http_ok
from bench.inference_load import Call, HttpPool, Results, closed_loop, ratio, row, show
from common.settings import add_option
from inference.detection import corpus

TEXTS = [e.text for e in corpus.load()]
# Until the adapter includes the detection router itself, the same app plus the router (one line);
# afterwards this factory returns the adapter's own app unchanged.
ADAPTER_FACTORY = "tests.detect_fixtures:adapter_app"


def window(i: int, size: int) -> list[str]:
    return [TEXTS[(i + k) % len(TEXTS)] for k in range(size)]


def direct_call(client: InferenceServerClient, size: int) -> Call:
    outputs = [InferRequestedOutput("PROBS")]

    async def call(i: int) -> None:
        data = np.array([t.encode() for t in window(i * size, size)], dtype=np.object_).reshape(size, 1)
        text = InferInput("TEXT", [size, 1], "BYTES")
        text.set_data_from_numpy(data)
        result = await client.infer("detector", [text], outputs=outputs)
        assert result.as_numpy("PROBS").shape == (size, 5)

    return call


def batch_call(pool: HttpPool, size: int) -> Call:
    async def call(i: int) -> None:
        body = orjson.loads(
            await pool.post("/v1/detect/batch", orjson.dumps({"texts": window(i * size, size)}))
        )
        assert body["count"] == size

    return call


def single_call(pool: HttpPool) -> Call:
    bodies = [orjson.dumps({"text": t}) for t in TEXTS]

    async def call(i: int) -> None:
        await pool.post("/v1/detect", bodies[i % len(bodies)])

    return call


async def cells(paths: dict[str, tuple[Call, int]], rounds: int, seconds: float) -> Results:
    """Every path (call, concurrency) `rounds` times, interleaved, so load drift hits all alike."""
    results: Results = {}
    for _ in range(rounds):
        for name, (call, concurrency) in paths.items():
            results.setdefault((name, concurrency), []).append(await closed_loop(call, concurrency, seconds))
    return results


async def run(args: argparse.Namespace, work: Path) -> None:
    triton = start_triton(work / "triton", args.device, "--model", "detector")
    port = free_port()
    os.environ.update({"TRITON_GRPC_URL": triton.grpc_url, "TRITON_METRICS_URL": triton.metrics_url})
    # Keep-alive as `python -m inference.adapter` sets it (uvicorn's 5 s would close the connections a
    # cell leaves idle while the other cells run).
    adapter_args = ["--factory", ADAPTER_FACTORY, "--port", str(port), "--timeout-keep-alive", "75"]
    adapter_args += ["--no-access-log", "--log-level", "warning"]
    adapter = start("uvicorn", adapter_args, work / "adapter.log")
    client = InferenceServerClient(triton.grpc_url)
    pool = HttpPool(port)
    size, callers = args.batch_size, args.callers
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/ready", adapter, 60)
        print(f"# detect bench: {args.rounds} rounds x {args.seconds:.0f} s a cell, {os.cpu_count()} CPUs\n")
        paths = {
            "direct": (direct_call(client, size), callers),
            "batch": (batch_call(pool, size), callers),
            "single": (single_call(pool), args.single_callers),
        }
        results = await cells(paths, args.rounds, args.seconds)
    finally:
        pool.close()
        await client.close()
        for proc in (adapter, triton.proc):
            stop(proc)

    direct, batch = results["direct", callers], results["batch", callers]
    single = results["single", args.single_callers]
    print(f"## texts/s (median of rounds; p50/p99 latency per call), {len(TEXTS)} corpus texts cycled\n")
    print(row("path", "callers", "texts per call", "texts/s (p50 / p99 ms)", "÷ direct"))
    print(row("---", "---", "---", "---", "---"))
    print(row("tritonclient -> Triton `detector`", callers, size, show(direct, size), "1"))
    print(row("POST /v1/detect/batch (adapter)", callers, size, show(batch, size), ratio(batch, direct)))
    print(row("POST /v1/detect (adapter)", args.single_callers, 1, show(single), "–"))
    per_round = [b.rps * size / s.rps for b, s in zip(batch, single, strict=True)]
    print(f"\n/v1/detect/batch ÷ /v1/detect, texts/s: {np.median(per_round):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.detect_throughput", description=__doc__.splitlines()[0]
    )
    add_option(parser, "--seconds", "BENCH_SECONDS", 6.0, "measured seconds per cell", float)
    add_option(parser, "--rounds", "BENCH_ROUNDS", 3, "interleaved repetitions of every cell", int)
    add_option(parser, "--batch-size", "BENCH_DETECT_BATCH", 32, "texts per /v1/detect/batch call", int)
    add_option(parser, "--callers", "BENCH_DETECT_CALLERS", 2, "concurrent batch callers", int)
    add_option(
        parser, "--single-callers", "BENCH_DETECT_SINGLE_CALLERS", 16, "concurrent /v1/detect callers", int
    )
    add_option(parser, "--device", "BENCH_DEVICE", "cpu", "Triton --device: cpu, gpu or auto")
    args = parser.parse_args(argv)
    if not 1 <= args.batch_size <= 64:
        parser.error(f"--batch-size must be 1..64 (the /v1/detect/batch limit), got {args.batch_size}")
    with tempfile.TemporaryDirectory(prefix="detect-bench-") as tmp:
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

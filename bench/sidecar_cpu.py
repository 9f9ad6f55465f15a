"""`python -m bench.sidecar_cpu`: CPU per ShouldRateLimit call of the rate-limit sidecar, no Envoy.

A grpc.aio client keeps 16 calls in flight against one sidecar process and reads that process's
CPU time from /proc: the do-nothing sidecar (transport only), the real service with the
in-memory store, and the real service on a private Valkey over TCP and over its unix socket.
Every answer is checked to be a real decision (x-ratelimit headers), so a store that fails fast
(failure mode) cannot pass for a fast one. Rounds alternate the variants, so machine noise
spreads over all of them.

    .venv/bin/python -m bench.sidecar_cpu [--calls 15000] [--rounds 2] [--out bench/results/sidecar_cpu.md]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest, RateLimitResponse

from bench.ratelimit_bench import proc_cpu_seconds, request_bytes
from stack.redis import server_args
from tests.procs import ROOT, free_port

IN_FLIGHT = 16
LOOSE = ["--rate-limit-minute", "1000000000", "--rate-limit-hour", "1000000000", "--log-level", "WARNING"]


def variants(redis_url: str, socket_url: str) -> dict[str, list[str]]:
    service = [sys.executable, "-m", "ratelimit_service", "--grpc-port", "{port}", *LOOSE, "--redis-url"]
    return {
        "do-nothing sidecar": [sys.executable, "-m", "bench.noop_sidecars", "ratelimit", "--port", "{port}"],
        "ratelimit_service, memory://": [*service, "memory://"],
        "ratelimit_service, Valkey (TCP)": [*service, redis_url],
        "ratelimit_service, Valkey (unix socket)": [*service, socket_url],
    }


def decided(response: RateLimitResponse, noop: bool) -> bool:
    return noop or any(h.key == "x-ratelimit-limit" for h in response.response_headers_to_add)


async def drive(port: int, pid: int, calls: int, noop: bool) -> tuple[float, float]:
    """(service CPU µs per call, calls per second); raises if an answer was not a decision."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        requests = [RateLimitRequest.FromString(raw) for raw in request_bytes(200)]
        for request in requests:  # warm-up: connections, script load
            await stub.ShouldRateLimit(request)
        undecided = 0

        async def worker(k: int) -> None:
            nonlocal undecided
            for i in range(k, calls, IN_FLIGHT):
                undecided += not decided(await stub.ShouldRateLimit(requests[i % len(requests)]), noop)

        cpu, wall = proc_cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(IN_FLIGHT)))
        cpu, wall = proc_cpu_seconds(pid) - cpu, time.perf_counter() - wall
    if undecided:
        raise RuntimeError(f"{undecided} of {calls} answers were not decisions (store failing?)")
    return cpu / calls * 1e6, calls / wall


def measure(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-cpu-"))
    redis_port = free_port()
    sock = workdir / "valkey.sock"
    redis_args = server_args(redis_port, workdir, ["--unixsocket", str(sock)])
    redis = subprocess.Popen(redis_args, stdout=subprocess.DEVNULL, cwd=ROOT)
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        time.sleep(1)
        for _ in range(args.rounds):
            for name, template in variants(
                f"redis://127.0.0.1:{redis_port}/0", f"unix://{sock}?db=0"
            ).items():
                port = free_port()
                command = [part.replace("{port}", str(port)) for part in template]
                quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
                proc = subprocess.Popen(command, cwd=ROOT, **quiet)
                try:
                    result = asyncio.run(drive(port, proc.pid, args.calls, name.startswith("do-nothing")))
                finally:
                    proc.terminate()
                    proc.wait(10)
                results.setdefault(name, []).append(result)
                print(f"{name:32s} {result[0]:6.0f} µs CPU/call {result[1]:7.0f} calls/s", flush=True)
    finally:
        redis.terminate()
        redis.wait(10)
    return results


def report(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> str:
    lines = [
        "# Rate-limit sidecar CPU per call (no Envoy)",
        "",
        f"Command: `python -m bench.sidecar_cpu --calls {args.calls} --rounds {args.rounds}`  ",
        f"Run: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; {IN_FLIGHT} calls in flight from a grpc.aio client "
        "on the same 2-core machine.",
        "",
        "| sidecar | CPU µs per call (each round) | calls/s (each round) |",
        "|---|---|---|",
    ]
    for name, rows in results.items():
        cpu = " / ".join(f"{c:.0f}" for c, _ in rows)
        rate = " / ".join(f"{r:,.0f}" for _, r in rows)
        lines.append(f"| {name} | {cpu} | {rate} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sidecar_cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=15_000, help="calls per measurement (default 15000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all variants (default 2)")
    parser.add_argument("--out", type=Path, help="write a markdown table here")
    args = parser.parse_args()
    text = report(measure(args), args)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

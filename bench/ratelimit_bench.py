"""Rate-limit service benchmark: decisions per second per core, and Redis memory per key.

    .venv/bin/python bench/ratelimit_bench.py [--decisions 50000] [--keys 100000] [--out FILE]

1. Handler: the service's per-request work in this process (parse the protobuf, match the
   config, one store call, build and serialise the response), no gRPC transport. CPU time
   of this process → decisions per second per core; in-memory store and a private Valkey.
2. Service: the real `python -m ratelimit_service` process under a grpc.aio load generator
   (16 in flight); CPU time of the service process (from /proc) → decisions per core-second.
3. Memory: N keys per algorithm in a fresh Valkey (one request each, the gateway's key
   names), used_memory delta / N; the sliding log also with 60 entries per key.
The load generator, Valkey and the service share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import redis.asyncio as aioredis
from envoy.extensions.common.ratelimit.v3.ratelimit_pb2 import RateLimitDescriptor
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ratelimit_service import responses  # noqa: E402
from ratelimit_service.config import DEFAULT_CONFIG, load_config  # noqa: E402
from ratelimit_service.limiter import Limiter, counter_base, store_windows  # noqa: E402
from ratelimit_service.service import request_descriptors  # noqa: E402
from ratelimit_service.store import MemoryStore, store_from_url  # noqa: E402
from ratelimit_service.windows import Window  # noqa: E402
from stack.redis import server_args  # noqa: E402

E = RateLimitDescriptor.Entry
ALGORITHMS = ("sliding_window", "fixed_window", "sliding_log")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gateway_entries(i: int) -> list[tuple[str, str]]:
    """The descriptor Envoy sends for key number i (key ids look like authz's key_<16 hex>)."""
    return [("route", "v1"), ("plan", "free"), ("api_key", f"key_{i:016x}")]


def request_bytes(key_count: int) -> list[bytes]:
    """Serialized gateway requests for `key_count` keys, as Envoy sends them."""
    requests = []
    for i in range(key_count):
        entries = [E(key=k, value=v) for k, v in gateway_entries(i)]
        descriptor = RateLimitDescriptor(entries=entries)
        requests.append(RateLimitRequest(domain="gateway", descriptors=[descriptor]).SerializeToString())
    return requests


async def handler_rate(limiter: Limiter, payloads: list[bytes], n: int, concurrency: int) -> float:
    """Decisions per CPU-second of this process for the in-process handler."""
    rnd = random.Random(1)
    picks = [rnd.choice(payloads) for _ in range(n)]

    async def one(raw: bytes) -> bytes:
        request = RateLimitRequest.FromString(raw)
        descriptors = request_descriptors(request)
        verdict = await limiter.decide(request.domain, descriptors, request.hits_addend or 1)
        return responses.from_verdict(verdict, len(descriptors)).SerializeToString()

    async def worker(part: list[bytes]) -> None:
        for raw in part:
            await one(raw)

    cpu = time.process_time()
    await asyncio.gather(*(worker(picks[i::concurrency]) for i in range(concurrency)))
    return n / (time.process_time() - cpu)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def service_rate(store_url: str, payloads: list[bytes], n: int, workdir: Path) -> tuple[float, float]:
    """(decisions per service CPU-second, decisions per wall second) of the real service."""
    port = free_port()
    args = [sys.executable, "-m", "ratelimit_service", "--grpc-port", str(port), "--redis-url", store_url]
    args += ["--rate-limit-minute", "1000000000", "--rate-limit-hour", "1000000000", "--log-level", "WARNING"]
    log = open(workdir / f"service-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await asyncio.wait_for(channel.channel_ready(), 30)
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        requests = [RateLimitRequest.FromString(p) for p in payloads[:1000]]
        for r in requests[:200]:  # warm up (script load, connections)
            await stub.ShouldRateLimit(r)

        async def worker(k: int) -> None:
            for i in range(k, n, 16):
                await stub.ShouldRateLimit(requests[i % len(requests)])

        cpu, wall = proc_cpu_seconds(proc.pid), time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(16)))
        cpu, wall = proc_cpu_seconds(proc.pid) - cpu, time.perf_counter() - wall
        await channel.close()
        return n / cpu, n / wall
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def memory_per_key(url: str, keys: int) -> list[tuple[str, int, float]]:
    store = store_from_url(url, timeout=5)
    client = aioredis.Redis.from_url(url)
    results = []
    cases = [(a, 1) for a in ALGORITHMS] + [("sliding_log", 60)]
    try:
        for algorithm, entries in cases:
            await client.execute_command("FLUSHALL", "SYNC")  # not lazily: `before` must be settled
            before = (await client.info("memory"))["used_memory"]
            # An hour window: no key may expire (or roll over) while the cell runs.
            window = Window("hour", 1000, algorithm)
            for start in range(0, keys, 50):
                batch = [
                    store_windows(counter_base("gateway", gateway_entries(i)), (window,), True)
                    for i in range(start, min(keys, start + 50))
                ]
                await asyncio.gather(*(store.apply(b, entries) for b in batch))
            after = (await client.info("memory"))["used_memory"]
            assert await client.dbsize() == keys
            results.append((algorithm, entries, (after - before) / keys))
    finally:
        await client.aclose()
        await store.close()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50_000, help="decisions per throughput cell")
    parser.add_argument("--keys", type=int, default=100_000, help="keys per memory cell")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rlbench-"))
    port = free_port()
    valkey = subprocess.Popen(server_args(port, workdir), stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    lines = []
    try:
        time.sleep(0.5)
        config = load_config(DEFAULT_CONFIG)
        payloads = request_bytes(10_000)
        memory_limiter = Limiter(config, MemoryStore())
        redis_limiter = Limiter(config, store_from_url(url, timeout=5))
        for _ in range(2):  # warm both (imports, script load)
            await handler_rate(memory_limiter, payloads, 2000, 1)
            await handler_rate(redis_limiter, payloads, 2000, 16)
        mem = await handler_rate(memory_limiter, payloads, args.decisions, 1)
        red = await handler_rate(redis_limiter, payloads, args.decisions, 16)
        svc_mem = await service_rate("memory://", payloads, args.decisions, workdir)
        svc_red = await service_rate(url, payloads, args.decisions, workdir)
        lines += [
            "| what | store | decisions / s per core (CPU of the deciding process) | decisions / s wall |",
            "|---|---|---|---|",
            f"| handler in-process (parse + decide + build response) | memory | {mem:,.0f} | – |",
            f"| handler in-process, 16 in flight | Valkey | {red:,.0f} | – |",
            f"| service over gRPC, 16 in flight | memory | {svc_mem[0]:,.0f} | {svc_mem[1]:,.0f} |",
            f"| service over gRPC, 16 in flight | Valkey | {svc_red[0]:,.0f} | {svc_red[1]:,.0f} |",
            "",
            f"| algorithm | entries per key | bytes per key ({args.keys:,} keys, one window each) |",
            "|---|---|---|",
        ]  # fmt: skip
        for algorithm, entries, per_key in await memory_per_key(url, args.keys):
            lines.append(f"| {algorithm} | {entries} | {per_key:,.0f} |")
        await redis_limiter.store.close()
    finally:
        valkey.terminate()
        valkey.wait(10)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())

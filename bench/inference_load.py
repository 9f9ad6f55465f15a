"""Closed-loop load for the inference bench: the calls compared, the loop, and the statistics.

Kept apart from bench/inference_bench.py (which starts the processes and prints the report).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import orjson
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from inference.adapter.triton_client import TritonEmbedder

SENTENCES = (
    "The quick brown fox jumps over the lazy dog",
    "Quarterly revenue grew by four percent on strong demand",
    "Seven tired engineers measured the queue at the gateway",
    "A short note about embeddings and dynamic batching",
)
TEXTS = [f"{SENTENCES[i % 4]} (item {i})" for i in range(256)]  # ~12-16 tokens each


@dataclass(frozen=True)
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float


Call = Callable[[int], Awaitable[None]]


async def closed_loop(call: Call, concurrency: int, seconds: float) -> Cell:
    """`concurrency` workers calling back to back for `seconds` (after a 1 s warm-up)."""
    latencies: list[float] = []
    measuring = False
    end = time.perf_counter() + 1.0 + seconds

    async def worker(w: int) -> None:
        i = w
        while (now := time.perf_counter()) < end:
            await call(i % len(TEXTS))
            if measuring:
                latencies.append(time.perf_counter() - now)
            i += concurrency

    async def clock() -> None:
        nonlocal measuring
        await asyncio.sleep(1.0)
        measuring = True

    started = time.perf_counter() + 1.0
    await asyncio.gather(clock(), *(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return Cell(len(latencies) / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)))


def direct_call(client: InferenceServerClient) -> Call:
    outputs = [InferRequestedOutput("EMBEDDING"), InferRequestedOutput("TOKENS")]

    async def call(i: int) -> None:
        text = InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[TEXTS[i].encode()]], dtype=np.object_))
        result = await client.infer("embedder", [text], outputs=outputs)
        assert result.as_numpy("EMBEDDING").shape == (1, 384)

    return call


class HttpPool:
    """Keep-alive HTTP/1.1 connections to the adapter, one per worker (no pooling logic on the hot path)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes) -> bytes:
        conn = self.free.pop() if self.free else await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = conn
        head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        header = await reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = next(
            int(line[15:]) for line in header.lower().split(b"\r\n") if line.startswith(b"content-length:")
        )
        payload = await reader.readexactly(length)
        self.free.append(conn)
        if status != 200:
            raise RuntimeError(f"adapter answered {status}: {payload[:200]!r}")
        return payload

    def close(self) -> None:
        for _, writer in self.free:
            writer.close()


def adapter_call(pool: HttpPool) -> Call:
    bodies = [orjson.dumps({"input_text": t}) for t in TEXTS]

    async def call(i: int) -> None:
        await pool.post("/v1/embed", bodies[i])

    return call


def list_call(embedder: TritonEmbedder, batched: bool, size: int = 16) -> Call:
    async def call(i: int) -> None:
        texts = [TEXTS[(i + k) % len(TEXTS)] for k in range(size)]
        result = await embedder.embed(texts, batched=batched)
        assert result.vectors.shape == (size, 384)

    return call


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


Results = dict[tuple[str, int], list[Cell]]


async def sweep(paths: dict[str, Call], levels: list[int], rounds: int, seconds: float) -> Results:
    """Every path at every level, `rounds` times, interleaved, so load drift hits all paths alike."""
    results: Results = {}
    for c in levels:
        for _ in range(rounds):
            for name, call in paths.items():
                results.setdefault((name, c), []).append(await closed_loop(call, c, seconds))
    return results


def median(cells: list[Cell], attr: str) -> float:
    return float(np.median([getattr(cell, attr) for cell in cells]))


def show(cells: list[Cell], per_call: int = 1) -> str:
    rps = per_call * median(cells, "rps")
    return f"{rps:.1f} (p50 {median(cells, 'p50_ms'):.0f} / p99 {median(cells, 'p99_ms'):.0f} ms)"


def ratio(top: list[Cell], bottom: list[Cell]) -> str:
    """Median of the per-round ratios (each round's two cells ran back to back)."""
    return f"{np.median([a.rps / b.rps for a, b in zip(top, bottom, strict=True)]):.3f}"

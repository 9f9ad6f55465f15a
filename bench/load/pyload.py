"""A small closed-loop HTTP/1.1 load generator (asyncio streams, keep-alive connections).

The fallback when wrk is missing, and what the CI smoke test uses. It spends far more CPU per
request than wrk, so on 2 cores its figures are lower: use it to prove the harness works,
never to compare with wrk's numbers.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from urllib.parse import urlsplit

from bench.load.spec import LoadResult, RequestSpec, percentiles

TIMEOUT_S = 5.0


def encode(
    spec: RequestSpec, host: str, key: str | None, signature: tuple[str, str, str] | None = None
) -> bytes:
    path = signature[0] if signature else spec.path
    lines = [f"{spec.method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(spec.body)}"]
    lines += [f"{name}: {value}" for name, value in spec.headers(key, signature).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + spec.body


def prebuilt(spec: RequestSpec, host: str) -> list[bytes]:
    if spec.signed:
        return [encode(spec, host, spec.keys[0], entry) for entry in spec.signed]
    return [encode(spec, host, key) for key in spec.keys] or [encode(spec, host, None)]


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length or chunked body); its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # chunk + CRLF (the last chunk's CRLF ends the body)
            if size == 0:
                break
    return status


class _Tally:
    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.socket_errors = 0
        self.bad_status = 0


async def _connection(
    host: str, port: int, requests: list[bytes], start: int, deadline: float, tally: _Tally
):
    cycle = itertools.islice(itertools.cycle(requests), start % len(requests), None)
    writer = None
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
            began = time.perf_counter()
            writer.write(next(cycle))
            status = await asyncio.wait_for(read_response(reader), TIMEOUT_S)
            tally.latencies_us.append((time.perf_counter() - began) * 1e6)
            tally.bad_status += status >= 400
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            tally.socket_errors += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _run(url: str, spec: RequestSpec, concurrency: int, seconds: float) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = prebuilt(spec, f"{host}:{port}")
    tally = _Tally()
    began = time.monotonic()
    deadline = began + seconds
    await asyncio.gather(
        *(_connection(host, port, requests, i * 7919, deadline, tally) for i in range(concurrency))
    )
    elapsed = time.monotonic() - began
    samples = tally.latencies_us
    return LoadResult(
        tool="python",
        concurrency=concurrency,
        requests=len(samples),
        duration_s=elapsed,
        socket_errors=tally.socket_errors,
        bad_status=tally.bad_status,
        latency_us=percentiles(samples),
        mean_us=sum(samples) / len(samples) if samples else 0.0,
        max_us=max(samples, default=0.0),
    )


def run(url: str, spec: RequestSpec, concurrency: int, seconds: float) -> LoadResult:
    """Same contract as bench.load.wrk.run."""
    return asyncio.run(_run(url, spec, concurrency, seconds))

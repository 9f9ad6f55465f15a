"""Check calls/s of the ext_authz service alone (no Envoy): cache hits and cache misses.

    python -m bench.authz_bench [--seconds 5] [--concurrency 32] [--profile] [--out FILE]

Starts a private Postgres (unless --database-url) and `python -m authz_service` pinned to
CPU 0; the load generator (grpc.aio, pre-serialised xds-protos CheckRequests, replies left
undecoded except a sample that is checked) runs pinned to CPU 1. Besides calls/s it reads
the server's CPU time from /proc, so "checks per server CPU second" is the capacity of one
core even when the load generator, not the server, is the bottleneck.

Cases: `hit` (100 keys, all cached), `miss-known` (each call a different stored key, never
cached before: one Postgres query each), `miss-unknown` (each call a random well-formed key:
one query each, then a negative entry).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import pstats
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz_service import keys
from authz_service.store import PostgresKeyStore, new_key_id
from common import probes
from tests.procs import PYTHON, Proc, free_port, python_module

CHECK = "/envoy.service.auth.v3.Authorization/Check"
SERVER_CPU, CLIENT_CPU = 0, 1
SAMPLE = 200  # replies decoded and checked per case


@dataclass
class Result:
    case: str
    calls: int
    seconds: float
    server_cpu: float
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def row(self) -> str:
        per_call_us = 1e6 * self.server_cpu / max(self.calls, 1)
        per_core = self.calls / self.server_cpu if self.server_cpu else float("nan")
        sample = ", ".join(f"{code}×{n}" for code, n in sorted(self.statuses.items()))
        return (
            f"| {self.case} | {self.calls:,} | {self.seconds:.1f} | {self.rate:,.0f} | "
            f"{100 * self.server_cpu / self.seconds:.0f}% | {per_call_us:.0f} | {per_core:,.0f} | {sample} |"
        )


def request_bytes(key: str, path: str = "/v1/embed") -> bytes:
    message = CheckRequest()
    http = message.attributes.request.http
    http.method, http.path, http.host = "POST", path, "gateway"
    http.headers.update({"authorization": f"Bearer {key}", "content-type": "application/json",
                         "user-agent": "authz-bench", "x-request-id": "bench"})  # fmt: skip
    return message.SerializeToString()


def http_status(reply: bytes) -> int:
    response = CheckResponse.FromString(reply)
    return 200 if response.status.code == 0 else response.denied_response.status.code


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(target: str, payloads: Iterator[bytes], concurrency: int, seconds: float, pid: int) -> Result:
    statuses: dict[int, int] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(CHECK)  # bytes in, bytes out: no client-side protobuf work
        loop = asyncio.get_running_loop()
        stop = loop.time() + seconds
        calls = 0

        async def worker() -> None:
            nonlocal calls
            for payload in payloads:
                if loop.time() >= stop:
                    return
                reply = await call(payload)
                calls += 1
                if calls <= SAMPLE:
                    code = http_status(reply)
                    statuses[code] = statuses.get(code, 0) + 1

        cpu_before, started = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
    return Result("", calls, elapsed, cpu, statuses)


def cycle(items: list[bytes]) -> Iterator[bytes]:
    while True:
        yield from items


async def make_keys(database_url: str, count: int) -> list[str]:
    """`count` stored keys, inserted in one COPY (the store's own insert is one round trip each)."""
    await (await PostgresKeyStore.connect(database_url, retry_seconds=30)).close()  # migrations
    made = [keys.generate_key("sk_test") for _ in range(count)]
    rows = [
        (new_key_id(), keys.hash_key(k), keys.display_prefix(k), "bench", "bench", "test", "free")
        for k in made
    ]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.copy_records_to_table(
            "api_keys", records=rows,
            columns=["id", "key_hash", "display_prefix", "name", "owner", "environment", "plan"],
        )  # fmt: skip
    finally:
        await conn.close()
    return made


async def make_all_keys(database_url: str, seconds: float) -> tuple[list[str], list[str]]:
    """100 hot keys and more cold ones than any one core can check in `seconds`.

    Made before the server starts: each insert NOTIFYs, and 100k notifications arriving
    during a measurement would be measured too.
    """
    hot = await make_keys(database_url, 100)
    return hot, await make_keys(database_url, int(seconds * 20_000))


async def run_cases(
    args: argparse.Namespace, target: str, pid: int, hot: list[str], cold: list[str]
) -> list[Result]:
    budget = len(cold)
    hot_payloads = [request_bytes(k) for k in hot]
    warm = cycle(hot_payloads)  # fills the cache and opens the channel
    await drive(target, warm, args.concurrency, 1.0, pid)
    cases = {
        "hit": cycle(hot_payloads),
        "miss-known": (request_bytes(k) for k in cold),
        "miss-unknown": (request_bytes(keys.generate_key("sk_test")) for _ in range(budget)),
    }
    results = []
    for case in args.cases:
        result = await drive(target, cases[case], args.concurrency, args.seconds, pid)
        result.case = case
        results.append(result)
        print(result.row(), flush=True)
    return results


def start_postgres(work: Path, base: Path) -> tuple[Proc, str]:
    base.chmod(0o755)  # Postgres runs as `nobody` when we are root
    port = free_port()
    proc = Proc(
        "bench-postgres", python_module("stack.postgres", "--port", str(port), "--dir", str(base)), work
    )
    proc.wait_port(port, 60)
    return proc, f"postgresql://postgres@127.0.0.1:{port}/postgres"


def start_server(work: Path, database_url: str, profile: Path | None) -> tuple[Proc, int]:
    port = free_port()
    args = ["-m", "authz_service", "--grpc-port", str(port), "--no-dev-key", "--log-level", "WARNING"]
    command = [PYTHON, *(["-m", "cProfile", "-o", str(profile)] if profile else []), *args]
    proc = Proc("bench-authz", command, work, {"DATABASE_URL": database_url})
    os.sched_setaffinity(proc.popen.pid, {SERVER_CPU})
    proc.wait_until(lambda: probes.grpc_serving(f"127.0.0.1:{port}"), 60, "serving")
    return proc, port


def header(args: argparse.Namespace) -> list[str]:
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "bench.authz_bench", *sys.argv[1:]])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # others' work on the machine skews calls/s
    machine = f"{os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}"
    machine += f", load average {load}"
    return [
        f"Command: `{command}`",
        f"Machine: {machine}; server pinned to CPU {SERVER_CPU}, load generator to CPU {CLIENT_CPU}; "
        f"concurrency {args.concurrency}, {args.seconds:g} s per case"
        + (" (server under cProfile: slower)" if args.profile else ""),
        "",
        "| case | calls | s | checks/s | server CPU | server CPU µs/check | checks per server CPU s "
        "| sample of replies (HTTP status × n) |",
        "|---|---|---|---|---|---|---|---|",
    ]


def report(args: argparse.Namespace, results: list[Result], profile_text: str) -> str:
    lines = header(args) + [r.row() for r in results]
    if profile_text:
        lines += ["", "Server profile (cProfile, top functions by own time):", "```", profile_text, "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.authz_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight")
    parser.add_argument("--cases", nargs="+", default=["hit", "miss-known", "miss-unknown"],
                        choices=["hit", "miss-known", "miss-unknown"])  # fmt: skip
    parser.add_argument("--database-url", help="use this Postgres (default: a private embedded one)")
    parser.add_argument(
        "--profile", action="store_true", help="run the server under cProfile and print the top"
    )
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="authz-bench-"))
    os.sched_setaffinity(0, {CLIENT_CPU})
    postgres, pg_dir = None, Path(tempfile.mkdtemp(prefix="authz-bench-pg-", dir="/var/tmp"))
    if not args.database_url:
        postgres, args.database_url = start_postgres(work, pg_dir)
    profile = work / "server.prof" if args.profile else None
    hot, cold = asyncio.run(make_all_keys(args.database_url, args.seconds))
    server, port = start_server(work, args.database_url, profile)
    try:
        print("\n".join(header(args)), flush=True)
        results = asyncio.run(run_cases(args, f"127.0.0.1:{port}", server.popen.pid, hot, cold))
    finally:
        server.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)
    profile_text = ""
    if profile is not None and profile.exists():
        stream = io.StringIO()
        pstats.Stats(str(profile), stream=stream).sort_stats("tottime").print_stats(18)
        profile_text = "ncalls" + stream.getvalue().split("ncalls", 1)[1].rstrip()
        print(profile_text)
    text = report(args, results, profile_text)
    if args.out:
        args.out.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

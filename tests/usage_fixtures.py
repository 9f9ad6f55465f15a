"""Usage-record tests: a stand-in inference upstream that reports tokens, a restartable Postgres
for the usage tables, the writer process and an Envoy writing the usage log (imported by the tests)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.envoy_fixtures import EnvoyUnderTest, spawn_envoy
from tests.procs import Proc, free_port, python_module
from tests.stub_upstream import StubUpstream

ADMIN_TOKEN = "usage-admin-token"
COUNTS = ("requests", "tokens", "client_errors", "server_errors", "rate_limited")


class TokenUpstream(StubUpstream):
    """Stands in for the adapter: POST /v1/… with {"status": s, "tokens": n} answers status s, and
    on 200 the header x-gateway-tokens: n (as the adapter does). Counts the tokens it reported."""

    def __init__(self) -> None:
        self.tokens_reported = 0
        self._lock = threading.Lock()
        super().__init__()

    async def answer(self, path: str, body: bytes) -> tuple[int, bytes, bytes]:
        status, extra = 200, b""
        if path.startswith("/v1/") and body:
            asked = json.loads(body)
            status = int(asked.get("status", 200))
            if status == 200:
                extra = b"x-gateway-tokens: %d\r\n" % int(asked.get("tokens", 0))
                with self._lock:
                    self.tokens_reported += int(asked.get("tokens", 0))
        return status, extra, b'{"ok": true}'


class UsagePostgres:
    """A Postgres of its own for the usage tables: stopped and started again by the drills."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.port = run_dir, free_port()
        self.base = Path(tempfile.mkdtemp(prefix="gateway-usage-pg-", dir="/var/tmp"))
        self.base.chmod(0o755)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        args = python_module("stack.postgres", "--port", str(self.port), "--dir", str(self.base))
        self.proc = Proc("usage-postgres", args, self.run_dir)
        self.proc.wait_port(self.port, 60)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.url)
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()

        return asyncio.run(run())

    def totals(self, key_ids: list[str], table: str = "usage_hourly") -> dict[str, int]:
        sums = ", ".join(f"coalesce(sum({c}), 0)::bigint AS {c}" for c in COUNTS)
        row = self.fetch(f"SELECT {sums} FROM {table} WHERE key_id = any($1::text[])", key_ids)[0]
        return dict(row)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class UsageStack:
    envoy: EnvoyUnderTest
    upstream: TokenUpstream
    postgres: UsagePostgres
    log_path: Path
    http_port: int
    run_dir: Path
    writer: Proc | None = None
    restarts: list[float] = field(default_factory=list)

    def spawn_writer(self, name: str, http_port: int) -> Proc:
        args = ["--log", str(self.log_path), "--http-port", str(http_port), "--interval", "0.2"]
        env = {"DATABASE_URL": self.postgres.url, "AUTHZ_ADMIN_TOKEN": ADMIN_TOKEN}
        proc = Proc(name, python_module("usage_service", *args), self.run_dir, env)
        proc.wait_port(http_port, 30)
        return proc

    def start_writer(self) -> float:
        """Start the writer; returns the seconds until its HTTP port answered."""
        started = time.monotonic()
        self.writer = self.spawn_writer(f"usage-writer-{len(self.restarts)}", self.http_port)
        took = time.monotonic() - started
        self.restarts.append(took)
        return took

    def writer_cpu_s(self) -> float:
        """CPU seconds (user + system) the running writer has used."""
        assert self.writer is not None
        fields = Path(f"/proc/{self.writer.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill_writer(self) -> None:
        assert self.writer is not None
        self.writer.stop(signal.SIGKILL)
        self.writer = None

    def stat(self, name: str) -> int:
        return self.envoy.stat(name)


def envoy_counts(envoy: EnvoyUnderTest) -> dict[str, int]:
    """Envoy's own counters of answers on the public listener (and ratelimit refusals)."""
    names = {
        "2xx": "http.public.downstream_rq_2xx", "4xx": "http.public.downstream_rq_4xx",
        "5xx": "http.public.downstream_rq_5xx", "completed": "http.public.downstream_rq_completed",
        "over_limit": "cluster.inference_adapter.ratelimit.over_limit",
        "authz_ok": "http.public.ext_authz.ok",
    }  # fmt: skip
    return {label: envoy.stat(name) for label, name in names.items()}


def wait_for(check, timeout: float = 30, every: float = 0.2) -> float:  # type: ignore[no-untyped-def]
    """Seconds until check() is true (TimeoutError after `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(every)
    raise TimeoutError(f"not true after {timeout}s")


@pytest.fixture(scope="module")
def usage_stack(
    run_dir: Path, authz_port: int, loose_ratelimit_port: int, authz_http_port: int
) -> Iterator[UsageStack]:
    upstream = TokenUpstream()
    postgres = UsagePostgres(run_dir)
    log_path = run_dir / "usage" / "access.jsonl"
    log_path.parent.mkdir(exist_ok=True)
    http_port = free_port()
    overrides = {
        "authz_port": str(authz_port), "ratelimit_port": str(loose_ratelimit_port),
        "authz_http_port": str(authz_http_port), "adapter_port": str(upstream.port),
        "usage_log_path": str(log_path), "usage_http_port": str(http_port),
    }  # fmt: skip
    envoy = spawn_envoy(run_dir, "usage-envoy", overrides)
    stack = UsageStack(envoy, upstream, postgres, log_path, http_port, run_dir)
    stack.start_writer()
    try:
        yield stack
    finally:
        if stack.writer is not None:
            stack.writer.stop()
        envoy.proc.stop()
        postgres.cleanup()
        upstream.stop()


class Load:
    """`clients` threads sending POST /v1/embed back to back, bodies from `body_for(i)` -> (key,
    body), until `count` requests were sent or stop(). Tallies answer statuses."""

    def __init__(self, url: str, body_for, count: int | None = None, clients: int = 32) -> None:  # type: ignore[no-untyped-def]
        self.url, self.body_for, self.count = url, body_for, count
        self.tally: dict[int | str, int] = {}
        self._lock, self._next, self._stop = threading.Lock(), 0, threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def _take(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or (self.count is not None and self._next >= self.count):
                return None
            self._next += 1
            return self._next - 1

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while (index := self._take()) is not None:
                key, body = self.body_for(index)
                try:
                    headers = {"Authorization": f"Bearer {key}"}
                    status: int | str = http.post("/v1/embed", json=body, headers=headers).status_code
                except httpx.TransportError:
                    status = "transport"
                with self._lock:
                    self.tally[status] = self.tally.get(status, 0) + 1

    def sent(self) -> int:
        with self._lock:
            return sum(self.tally.values())

    def join(self) -> dict[int | str, int]:
        for thread in self._threads:
            thread.join(300)
        return dict(self.tally)

    def stop(self) -> dict[int | str, int]:
        self._stop.set()
        return self.join()

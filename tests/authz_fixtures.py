"""Session fixtures for authz tests (registered in tests/conftest.py).

`authz_gateway`: a real Envoy whose ext_authz cluster has two real authz replicas (long
cache TTL, so only LISTEN/NOTIFY can explain a fast revocation), whose /auth/ routes reach a
real `python -m authz_service.http`, whose ratelimit filter uses the session ratelimit
service, and whose "inference" upstream is an echo server that returns the headers it got.
`isolated_authz`: the same on a private Postgres that a test may stop and start.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from authz_service import keys
from authz_service.model import KeyRecord
from authz_service.store import PostgresKeyStore
from common import probes
from stack import envoy as envoy_launcher
from tests.procs import PYTHON, ROOT, Proc, free_port, python_module
from tests.signing_keys import SIGNING_MASTER_KEY

ADMIN_TOKEN = "test-admin-token-0123456789"
REPLICA_CACHE_TTL_S = "300"  # far longer than any test: a change must arrive by NOTIFY
PLAN_RATE_LIMIT_MINUTE = "3"  # the session ratelimit service's limit (tests.conftest)
LOOSE = "1000000"


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with 200 and {"method", "path", "headers"} (names lower-cased)."""

    def _reply(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = json.dumps({"method": self.command, "path": self.path, "headers": headers}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply

    def log_message(self, *_: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[int]:
    """Port of an in-process HTTP echo server (the stand-in for the inference adapter)."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def create_key(
    database_url: str, prefix: str = "sk_test", key: str | None = None, **fields: Any
) -> tuple[str, KeyRecord]:
    """A new key (or `key`) in the real store: (plaintext, record)."""
    key = key or keys.generate_key(prefix)
    fields.setdefault("name", "authz-test")
    fields.setdefault("owner", "authz-tests")

    async def add() -> KeyRecord:
        store = await PostgresKeyStore.connect(database_url, retry_seconds=5)
        try:
            return await store.create_key(key, **fields)
        finally:
            await store.close()

    return key, asyncio.run(add())


def fetchval(database_url: str, query: str, *args: object) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def keys_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m authz_service.keys ARGS` against `database_url`."""
    return subprocess.run(
        [PYTHON, "-m", "authz_service.keys", *args, "--database-url", database_url],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "SIGNING_MASTER_KEY": SIGNING_MASTER_KEY},
    )  # fmt: skip


def spawn_authz(run_dir: Path, name: str, database_url: str, *extra: str) -> tuple[Proc, int]:
    port = free_port()
    env = {"DATABASE_URL": database_url, "AUTHZ_CACHE_TTL": REPLICA_CACHE_TTL_S,
           "AUTHZ_LAST_USED_INTERVAL": "0.5", "RATE_LIMIT_MINUTE": PLAN_RATE_LIMIT_MINUTE,
           "SIGNING_MASTER_KEY": SIGNING_MASTER_KEY}  # fmt: skip
    args = python_module("authz_service", "--grpc-port", str(port), "--no-dev-key", *extra)
    proc = Proc(name, args, run_dir, env)
    proc.wait_until(lambda: probes.grpc_serving(f"127.0.0.1:{port}"), 60, "serving")
    return proc, port


def spawn_authz_http(run_dir: Path, name: str, database_url: str, redis_url: str) -> tuple[Proc, int]:
    port = free_port()
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "AUTHZ_ADMIN_TOKEN": ADMIN_TOKEN,
           "RATE_LIMIT_MINUTE": PLAN_RATE_LIMIT_MINUTE, "SIGNING_MASTER_KEY": SIGNING_MASTER_KEY}  # fmt: skip
    proc = Proc(name, python_module("authz_service.http", "--port", str(port)), run_dir, env)
    proc.wait_until(lambda: probes.http_ok(f"http://127.0.0.1:{port}/health"), 60, "serving")
    return proc, port


@pytest.fixture(scope="session")
def authz_http_port(run_dir: Path, database_url: str, redis_url: str) -> Iterator[int]:
    """The key API (`python -m authz_service.http`) on the session Postgres and Redis.

    Admin token ADMIN_TOKEN; the gateway fixture can route /auth/ here (`authz_http_port`).
    """
    proc, port = spawn_authz_http(run_dir, "authz-http", database_url, redis_url)
    yield port
    proc.stop()


@pytest.fixture(scope="session")
def loose_authz_port(run_dir: Path, database_url: str) -> Iterator[int]:
    """An authz replica on the session store whose plans allow 1,000,000 requests a minute/hour.

    ext_authz puts each key's effective limits into the metadata the ratelimit descriptors
    carry, so a loose ratelimit service alone no longer loosens limits: pair it with this.
    """
    proc, port = spawn_authz(
        run_dir, "authz-loose", database_url, "--rate-limit-minute", LOOSE, "--rate-limit-hour", LOOSE
    )
    yield port
    proc.stop()


@dataclass
class AuthzGateway:
    url: str
    admin_url: str
    database_url: str
    replica_ports: list[int]
    procs: list[Proc] = field(default_factory=list)

    def new_key(self, **fields: Any) -> tuple[str, KeyRecord]:
        return create_key(self.database_url, **fields)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return keys_cli(self.database_url, *args)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def write_envoy_config(
    path: Path, overrides: dict[str, str], authz_ports: list[int], cluster: str = "authz"
) -> Path:
    """The project's template, with every replica as an endpoint of `cluster` (authz by default)."""
    envoy_launcher.write_config(path, overrides)
    config = yaml.safe_load(path.read_text())
    authz = next(c for c in config["static_resources"]["clusters"] if c["name"] == cluster)
    hosts = [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
             for p in authz_ports]  # fmt: skip
    authz["load_assignment"]["endpoints"] = [{"lb_endpoints": hosts}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def spawn_gateway(
    run_dir: Path, name: str, authz_ports: list[int], http_port: int, ratelimit_port: int, echo_port: int
) -> tuple[Proc, str, str]:
    port, admin_port = free_port(), free_port()
    overrides = {
        "listen_port": str(port), "admin_port": str(admin_port), "authz_port": str(authz_ports[0]),
        "authz_http_port": str(http_port), "ratelimit_port": str(ratelimit_port),
        "adapter_port": str(echo_port),
    }  # fmt: skip
    config = write_envoy_config(run_dir / f"{name}.yaml", overrides, authz_ports)
    proc = Proc(name, envoy_launcher.envoy_args(config, log_level="error"), run_dir)
    url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"

    def healthy() -> bool:
        lines = httpx.get(f"{admin}/clusters", timeout=1).text.splitlines()
        flags = [line for line in lines if "::health_flags::" in line]
        authz_ok = sum(line.startswith("authz::") and line.endswith("::healthy") for line in flags)
        others = {line.split("::")[0] for line in flags if line.endswith("::healthy")}
        return authz_ok == len(authz_ports) and {"ratelimit", "inference_adapter"} <= others

    proc.wait_until(healthy, 30, "routing to healthy replicas")
    return proc, url, admin


@pytest.fixture(scope="session")
def authz_gateway(
    run_dir: Path,
    database_url: str,
    redis_url: str,
    authz_http_port: int,
    ratelimit_port: int,
    echo_upstream: int,
) -> Iterator[AuthzGateway]:
    procs: list[Proc] = []
    try:
        replica_ports = []
        for i in (1, 2):
            # One Redis for both: a signature accepted by one replica is a replay at the other.
            proc, port = spawn_authz(run_dir, f"authz-replica-{i}", database_url, "--redis-url", redis_url)
            procs.append(proc)
            replica_ports.append(port)
        envoy, url, admin = spawn_gateway(
            run_dir, "authz-envoy", replica_ports, authz_http_port, ratelimit_port, echo_upstream
        )
        procs.append(envoy)
        gateway = AuthzGateway(url, admin, database_url, replica_ports, procs)
        yield gateway
    finally:
        for proc in reversed(procs):
            proc.stop()


@dataclass
class IsolatedAuthz(AuthzGateway):
    """An authz replica and Envoy on a private Postgres that the test may stop and restart."""

    postgres: Proc | None = None
    postgres_args: list[str] = field(default_factory=list)
    run_dir: Path = Path()
    metrics_port: int = 0  # the replica's Prometheus /metrics

    def metric(self, name: str) -> float:
        """One sample from the replica's /metrics (0 when absent)."""
        for line in httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == name:
                return float(value)
        return 0.0

    def stop_postgres(self) -> None:
        assert self.postgres is not None
        self.postgres.stop()

    def start_postgres(self) -> None:
        self.postgres = Proc("isolated-postgres-again", self.postgres_args, self.run_dir)
        self.postgres.wait_port(int(self.database_url.rsplit(":", 1)[1].split("/")[0]), 60)


@pytest.fixture
def isolated_authz(
    tmp_path: Path, redis_url: str, ratelimit_port: int, echo_upstream: int
) -> Iterator[IsolatedAuthz]:
    base = Path(tempfile.mkdtemp(prefix="authz-test-pg-", dir="/var/tmp"))
    base.chmod(0o755)  # Postgres runs as `nobody` when we are root
    pg_port = free_port()
    pg_args = python_module("stack.postgres", "--port", str(pg_port), "--dir", str(base))
    database_url = f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"
    stack = IsolatedAuthz("", "", database_url, [], postgres_args=pg_args, run_dir=tmp_path)
    try:
        stack.postgres = Proc("isolated-postgres", pg_args, tmp_path)
        stack.postgres.wait_port(pg_port, 60)
        stack.metrics_port = free_port()
        metrics_flag = ("--metrics-port", str(stack.metrics_port))
        replica, replica_port = spawn_authz(tmp_path, "isolated-authz", database_url, *metrics_flag)
        stack.procs.append(replica)
        http_proc, http_port = spawn_authz_http(tmp_path, "isolated-authz-http", database_url, redis_url)
        stack.procs.append(http_proc)
        envoy, stack.url, stack.admin_url = spawn_gateway(
            tmp_path, "isolated-envoy", [replica_port], http_port, ratelimit_port, echo_upstream
        )
        stack.procs.append(envoy)
        stack.replica_ports = [replica_port]
        yield stack
    finally:
        stack.stop()
        if stack.postgres is not None:
            stack.postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The shared JSON error body with this status and code; returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["error"] and body["detail"], body
    return body

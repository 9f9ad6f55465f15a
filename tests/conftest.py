"""Session fixtures: the real stack (Valkey, Postgres, Triton, adapter, sidecars, Envoy) on free ports."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from authz_service import keys
from authz_service.store import PostgresKeyStore
from common import probes
from stack import envoy as envoy_launcher
from tests.procs import Proc, free_port, python_module
from tests.signing_keys import SIGNING_MASTER_KEY

pytest_plugins = [
    "tests.inference_fixtures",
    "tests.authz_fixtures",
    "tests.ratelimit_fixtures",
    "tests.envoy_fixtures",
    "tests.detect_fixtures",
    "tests.usage_fixtures",
]

# Small on purpose: the 4th request in a minute is refused. Tests use a fresh key each.
TEST_RATE_LIMIT_MINUTE = 3
ALLOWED_ORIGIN = "https://app.example.com"


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def redis_url(run_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = Proc(
        "redis", python_module("stack.redis", "--port", str(port), "--dir", str(run_dir / "redis")), run_dir
    )
    proc.wait_port(port, 15)
    yield f"redis://127.0.0.1:{port}/0"
    proc.stop()


@pytest.fixture(scope="session")
def database_url(run_dir: Path) -> Iterator[str]:
    port = free_port()
    # Postgres runs as `nobody` when we are root: pytest's 0700 temp dirs are out of its reach,
    # so the cluster lives in a fresh world-traversable folder that we remove afterwards.
    base = Path(tempfile.mkdtemp(prefix="gateway-test-pg-", dir="/var/tmp"))
    base.chmod(0o755)
    proc = Proc("postgres", python_module("stack.postgres", "--port", str(port), "--dir", str(base)), run_dir)
    try:
        proc.wait_port(port, 60)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        proc.stop()
        shutil.rmtree(base, ignore_errors=True)


def grpc_serving(port: int) -> bool:
    return probes.grpc_serving(f"127.0.0.1:{port}")


@pytest.fixture(scope="session")
def dev_key() -> str:
    return keys.generate_key("sk_test")


@pytest.fixture(scope="session")
def authz_port(run_dir: Path, database_url: str, redis_url: str, dev_key: str) -> Iterator[int]:
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,  # the replay cache of signed requests
        "SIGNING_MASTER_KEY": SIGNING_MASTER_KEY,
        "TEST_API_KEY": dev_key,
        "AUTHZ_CACHE_TTL": "1",
        "RATE_LIMIT_MINUTE": str(TEST_RATE_LIMIT_MINUTE),  # the effective limits it reports
    }
    proc = Proc("authz", python_module("authz_service", "--grpc-port", str(port)), run_dir, env)
    proc.wait_until(lambda: grpc_serving(port), 60, "serving")
    yield port
    proc.stop()


@pytest.fixture(scope="session")
def ratelimit_ports(run_dir: Path, redis_url: str) -> Iterator[tuple[int, int]]:
    """(gRPC port, HTTP port) of the session's rate-limit service."""
    port, http_port = free_port(), free_port()
    args = ["--grpc-port", str(port), "--http-port", str(http_port)]
    args += ["--rate-limit-minute", str(TEST_RATE_LIMIT_MINUTE)]
    proc = Proc("ratelimit", python_module("ratelimit_service", *args), run_dir, {"REDIS_URL": redis_url})
    proc.wait_until(lambda: grpc_serving(port), 30, "serving")
    yield port, http_port
    proc.stop()


@pytest.fixture(scope="session")
def ratelimit_port(ratelimit_ports: tuple[int, int]) -> int:
    return ratelimit_ports[0]


@dataclass(frozen=True)
class Gateway:
    url: str
    admin_url: str
    dev_key: str
    database_url: str
    envoy_log: str

    def new_key(self, prefix: str = "sk_test", expires_at: datetime | None = None) -> str:
        """A fresh key in the real store, so each test has its own rate-limit windows."""
        key = keys.generate_key(prefix)

        async def add() -> None:
            store = await PostgresKeyStore.connect(self.database_url, retry_seconds=5)
            try:
                await store.add_key(key, name="test", owner="tests", expires_at=expires_at)
            finally:
                await store.close()

        asyncio.run(add())
        return key

    def execute(self, query: str, *args: object) -> None:
        """Run SQL on the key store directly (for states the API cannot reach yet)."""

        async def run() -> None:
            conn = await asyncpg.connect(self.database_url)
            try:
                await conn.execute(query, *args)
            finally:
                await conn.close()

        asyncio.run(run())


@pytest.fixture(scope="session")
def gateway(
    run_dir: Path,
    authz_port: int,
    authz_http_port: int,
    ratelimit_ports: tuple[int, int],
    inference_adapter: str,
    database_url: str,
    dev_key: str,
) -> Iterator[Gateway]:
    port, admin_port = free_port(), free_port()
    ratelimit_port, ratelimit_http_port = ratelimit_ports
    adapter_port = httpx.URL(inference_adapter).port
    overrides = {
        "listen_port": str(port), "admin_port": str(admin_port),
        "authz_port": str(authz_port), "ratelimit_port": str(ratelimit_port),
        "ratelimit_http_port": str(ratelimit_http_port), "authz_http_port": str(authz_http_port),
        "adapter_port": str(adapter_port), "cors_origins": ALLOWED_ORIGIN,
    }  # fmt: skip
    config = envoy_launcher.write_config(run_dir / "envoy.yaml", overrides)
    envoy_launcher.validate(config)
    proc = Proc("envoy", envoy_launcher.envoy_args(config), run_dir)
    url = f"http://127.0.0.1:{port}"
    admin = f"http://127.0.0.1:{admin_port}"

    def sidecars_healthy() -> bool:
        hosts = httpx.get(f"{admin}/clusters", timeout=1).text.splitlines()
        healthy = {line.split("::")[0] for line in hosts if line.endswith("health_flags::healthy")}
        return {"authz", "ratelimit"} <= healthy and httpx.get(f"{url}/ready", timeout=2).status_code == 200

    proc.wait_until(sidecars_healthy, 30, "routing to healthy sidecars")
    yield Gateway(url, admin, dev_key, database_url, str(proc.log_path))
    proc.stop()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        yield http

"""Session fixtures for prompt-injection detection: a real Triton serving the `detector` ensemble, real
adapter processes serving /v1/detect, and Envoys in front of them.

Register with `pytest -p tests.detect_fixtures` (or in tests/conftest.py's `pytest_plugins`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.envoy_fixtures import Adapter, EnvoyUnderTest, spawn_envoy, wait_for_priority_0
from tests.inference_fixtures import TRITON_READY_TIMEOUT_S, TritonServer, distinct_free_ports, http_ok
from tests.procs import PYTHON, Proc, free_port, python_module

ADAPTER_READY_TIMEOUT_S = 30
CLUSTER = "inference_adapter"


def adapter_app() -> FastAPI:
    """The adapter app with the detection router: `uvicorn --factory tests.detect_fixtures:adapter_app`.

    Settings come from the environment, as for `python -m inference.adapter`. Until the adapter
    includes the router itself this adds it (one line, as the adapter will); afterwards it is a no-op.
    """
    from inference.adapter.app import create_app
    from inference.adapter.detect import detect_router
    from inference.adapter.settings import parse_settings

    settings = parse_settings([])
    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/v1/detect" for route in app.routes):
        app.include_router(detect_router(settings))
    return app


@pytest.fixture(scope="session")
def detect_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """Triton with the `detector` ensemble loaded (which loads `embedder` and `detect_head` with it)."""
    run_dir = tmp_path_factory.mktemp("detect-triton")
    http_port, grpc_port, metrics_port = distinct_free_ports(3)
    args = [
        "--model", "detector",
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        "--work-dir", str(run_dir / "work"),
    ]  # fmt: skip
    proc = Proc("triton-detect", python_module("inference.triton", *args), run_dir)
    try:
        proc.wait_until(
            lambda: http_ok(f"http://127.0.0.1:{http_port}/v2/models/detector/ready"),
            TRITON_READY_TIMEOUT_S,
            "ready",
        )
        yield TritonServer(
            grpc_url=f"127.0.0.1:{grpc_port}",
            http_port=http_port,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        )
    finally:
        proc.stop(timeout=30)


def spawn_detect_adapter(run_dir: Path, triton: TritonServer, name: str) -> Adapter:
    """A real adapter process (uvicorn, as in production) serving /v1/detect against `triton`."""
    port = free_port()
    env = {"TRITON_GRPC_URL": triton.grpc_url, "TRITON_METRICS_URL": triton.metrics_url}
    args = [PYTHON, "-m", "uvicorn", "--factory", "tests.detect_fixtures:adapter_app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
    proc = Proc(name, args, run_dir, env)
    proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/ready"), ADAPTER_READY_TIMEOUT_S, "ready")
    return Adapter(proc, port)


@pytest.fixture(scope="session")
def detect_adapter(tmp_path_factory: pytest.TempPathFactory, detect_triton: TritonServer) -> Iterator[str]:
    """Base URL of an adapter serving /v1/detect whose Triton has the detector ready."""
    adapter = spawn_detect_adapter(tmp_path_factory.mktemp("detect-adapter"), detect_triton, "adapter-detect")
    try:
        yield f"http://127.0.0.1:{adapter.port}"
    finally:
        adapter.proc.stop()


@dataclass(frozen=True)
class DetectGateway:
    url: str
    envoy: EnvoyUnderTest


@pytest.fixture(scope="session")
def detect_gateway(
    run_dir: Path, authz_port: int, ratelimit_port: int, detect_adapter: str
) -> Iterator[DetectGateway]:
    """Envoy (ext_authz, the session's 3-per-minute limits) in front of the detect adapter."""
    overrides = {
        "authz_port": str(authz_port),
        "ratelimit_port": str(ratelimit_port),
        "adapter_port": str(httpx.URL(detect_adapter).port),
    }
    envoy = spawn_envoy(run_dir, "envoy-detect", overrides)
    try:
        yield DetectGateway(envoy.url, envoy)
    finally:
        envoy.proc.stop()


@dataclass
class DetectPools:
    envoy: EnvoyUnderTest
    primary: list[Adapter]  # priority 0 (the "GPU" pool)
    fallback: Adapter  # priority 1 (the "CPU" pool)


@pytest.fixture
def detect_pools(
    run_dir: Path, detect_triton: TritonServer, authz_port: int, loose_ratelimit_port: int
) -> Iterator[DetectPools]:
    """Envoy with a 2-adapter priority-0 pool and a 1-adapter priority-1 pool, all serving /v1/detect."""
    primary = [spawn_detect_adapter(run_dir, detect_triton, f"adapter-detect-p0-{i}") for i in range(2)]
    fallback = spawn_detect_adapter(run_dir, detect_triton, "adapter-detect-p1")
    overrides = {
        "authz_port": str(authz_port),
        "ratelimit_port": str(loose_ratelimit_port),
        "inference_endpoints": ",".join(a.address for a in primary),
        "inference_fallback_endpoints": fallback.address,
    }
    envoy = spawn_envoy(run_dir, "envoy-detect-pools", overrides)
    try:
        wait_for_priority_0(envoy, primary, fallback)
        yield DetectPools(envoy, primary, fallback)
    finally:
        for proc in [envoy.proc, *(a.proc for a in [*primary, fallback])]:
            proc.stop()

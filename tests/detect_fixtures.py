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

from tests.envoy_fixtures import Adapter, EnvoyUnderTest, spawn_adapter, spawn_envoy, wait_for_priority_0
from tests.inference_fixtures import TritonServer

ADAPTER_READY_TIMEOUT_S = 30
CLUSTER = "inference_adapter"


@pytest.fixture(scope="session")
def detect_triton(triton_server: TritonServer) -> TritonServer:
    """The session Triton: `python -m inference.triton` loads the detector ensemble by default."""
    return triton_server


@pytest.fixture(scope="session")
def detect_adapter(inference_adapter: str) -> str:
    """The session adapter serves /v1/detect too."""
    return inference_adapter


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
    primary = [spawn_adapter(run_dir, detect_triton, f"adapter-detect-p0-{i}") for i in range(2)]
    fallback = spawn_adapter(run_dir, detect_triton, "adapter-detect-p1")
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

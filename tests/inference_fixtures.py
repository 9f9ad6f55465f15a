"""Session fixtures for the inference tier: a real Triton (`python -m inference.triton`) and the adapter.

Register with `pytest_plugins = ["tests.inference_fixtures"]` (or `pytest -p tests.inference_fixtures`).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.procs import Proc, free_port, python_module

TRITON_READY_TIMEOUT_S = 120
ADAPTER_READY_TIMEOUT_S = 30


@dataclass(frozen=True)
class TritonServer:
    grpc_url: str  # host:port, as tritonclient.grpc wants it
    http_port: int
    metrics_url: str

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    run_dir = tmp_path_factory.mktemp("triton")
    http_port, grpc_port, metrics_port = distinct_free_ports(3)
    args = [
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        "--work-dir", str(run_dir / "work"),
    ]  # fmt: skip
    proc = Proc("triton", python_module("inference.triton", *args), run_dir)
    try:
        proc.wait_until(
            lambda: http_ok(f"http://127.0.0.1:{http_port}/v2/health/ready"), TRITON_READY_TIMEOUT_S, "ready"
        )
        yield TritonServer(
            grpc_url=f"127.0.0.1:{grpc_port}",
            http_port=http_port,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        )
    finally:
        proc.stop(timeout=30)  # Triton unloads the model and drains before exiting (~5 s)


@pytest.fixture(scope="session")
def inference_adapter(tmp_path_factory: pytest.TempPathFactory, triton_server: TritonServer) -> Iterator[str]:
    """Base URL of a running adapter whose Triton model is ready."""
    run_dir = tmp_path_factory.mktemp("adapter")
    port = free_port()
    args = [
        "--port", str(port), "--triton-grpc-url", triton_server.grpc_url,
        "--triton-metrics-url", triton_server.metrics_url,
    ]  # fmt: skip
    proc = Proc("inference-adapter", python_module("inference.adapter", *args), run_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_until(lambda: http_ok(f"{url}/ready"), ADAPTER_READY_TIMEOUT_S, "ready")
        yield url
    finally:
        proc.stop()

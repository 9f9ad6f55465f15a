"""Fixtures for the inference tier: a real Triton (`python -m inference.triton`) and the adapter.

Session-wide: `triton_server` + `inference_adapter`, shared by every test that only reads.
Per module: `private_inference`, a second Triton + adapter pair that tests may crash, overload
and restart without disturbing the shared one. Registered as a plugin by tests/conftest.py.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from tests.procs import Proc, free_port, python_module

TRITON_READY_TIMEOUT_S = 120
ADAPTER_READY_TIMEOUT_S = 30
PRIVATE_MAX_QUEUE_SIZE = 4  # small, so a burst overloads the private Triton at once


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


def start_triton(run_dir: Path, name: str, ports: list[int], *extra: str) -> tuple[Proc, TritonServer]:
    """`python -m inference.triton` on the given (http, grpc, metrics) ports, waited on until ready."""
    http_port, grpc_port, metrics_port = ports
    args = [
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        "--work-dir", str(run_dir / f"{name}-work"), "--device", "cpu", *extra,
    ]  # fmt: skip
    proc = Proc(name, python_module("inference.triton", *args), run_dir)
    server = TritonServer(f"127.0.0.1:{grpc_port}", http_port, f"http://127.0.0.1:{metrics_port}/metrics")
    try:
        proc.wait_until(
            lambda: http_ok(f"{server.http_url}/v2/health/ready"), TRITON_READY_TIMEOUT_S, "ready"
        )
    except BaseException:
        proc.stop(timeout=30)
        raise
    return proc, server


def start_adapter(run_dir: Path, name: str, triton: TritonServer, *extra: str) -> tuple[Proc, str]:
    port = free_port()
    args = [
        "--port", str(port), "--triton-grpc-url", triton.grpc_url, "--triton-metrics-url", triton.metrics_url,
        *extra,
    ]  # fmt: skip
    proc = Proc(name, python_module("inference.adapter", *args), run_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_until(lambda: http_ok(f"{url}/ready"), ADAPTER_READY_TIMEOUT_S, "ready")
    except BaseException:
        proc.stop()
        raise
    return proc, url


def child_pids(pid: int) -> list[int]:
    """Live children of `pid` (a killed python-backend stub stays a zombie: Triton does not reap it)."""
    try:
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return [child for child in children if not _zombie(child)]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    proc, server = start_triton(tmp_path_factory.mktemp("triton"), "triton", distinct_free_ports(3))
    yield server
    proc.stop(timeout=30)  # Triton unloads the model and drains before exiting (~5 s)


@pytest.fixture(scope="session")
def inference_adapter(tmp_path_factory: pytest.TempPathFactory, triton_server: TritonServer) -> Iterator[str]:
    """Base URL of a running adapter whose Triton model is ready."""
    proc, url = start_adapter(tmp_path_factory.mktemp("adapter"), "inference-adapter", triton_server)
    yield url
    proc.stop()


@dataclass
class InferencePair:
    """A Triton + adapter of one test module's own, with a small queue, that may be crashed and restarted."""

    run_dir: Path
    ports: list[int]
    adapter_url: str
    triton: TritonServer
    triton_proc: Proc
    restarts: int = 0
    procs: list[Proc] = field(default_factory=list)  # every launcher started, to stop at the end
    # Only the embedder: one python-backend stub, so the crash test knows which one it kills.
    triton_args: ClassVar[tuple[str, ...]] = (
        "--max-queue-size",
        str(PRIVATE_MAX_QUEUE_SIZE),
        "--also-load",
        "",
    )

    @property
    def server_pid(self) -> int:
        """The tritonserver process (the launcher's child)."""
        children = child_pids(self.triton_proc.popen.pid)
        assert children, f"launcher has no tritonserver child:\n{self.triton_proc.log_tail()}"
        return children[0]

    def stub_pid(self) -> int:
        """The python-backend stub running the model (tritonserver's child)."""
        children = child_pids(self.server_pid)
        assert children, "tritonserver has no python-backend stub"
        return children[0]

    def kill(self, pid: int) -> None:
        """SIGKILL one of this pair's processes (the server or its stub), by PID."""
        assert pid in (self.server_pid, *child_pids(self.server_pid)), f"{pid} is not this pair's Triton"
        os.kill(pid, signal.SIGKILL)

    def crash_triton(self) -> int:
        """SIGKILL tritonserver (no drain, no unload), as an OOM killer would; the launcher's exit code."""
        self.kill(self.server_pid)
        self.triton_proc.popen.wait(30)
        return self.triton_proc.stop()

    def restart_triton(self) -> None:
        self.restarts += 1
        self.triton_proc, self.triton = start_triton(
            self.run_dir, f"triton-restart{self.restarts}", self.ports, *self.triton_args
        )
        self.procs.append(self.triton_proc)


@pytest.fixture(scope="module")
def private_inference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferencePair]:
    run_dir = tmp_path_factory.mktemp("private-inference")
    ports = distinct_free_ports(3)
    triton_proc, triton = start_triton(run_dir, "triton", ports, *InferencePair.triton_args)
    try:
        adapter_proc, url = start_adapter(run_dir, "adapter", triton, "--request-timeout", "10")
    except BaseException:
        triton_proc.stop(timeout=30)
        raise
    pair = InferencePair(run_dir, ports, url, triton, triton_proc, procs=[triton_proc])
    yield pair
    adapter_proc.stop()
    for proc in pair.procs:
        proc.stop(timeout=30)

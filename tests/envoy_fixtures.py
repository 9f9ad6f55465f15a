"""Extra Envoys and adapters for resilience tests (separate from the session gateway)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from stack import envoy as envoy_launcher
from tests.inference_fixtures import TritonServer
from tests.procs import Proc, free_port, python_module

# Resilience tests send hundreds of requests per key: give them their own generous limiter.
LOOSE_RATE_LIMIT = 1_000_000
CLUSTER = "inference_adapter"


@dataclass
class Adapter:
    proc: Proc
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class EnvoyUnderTest:
    proc: Proc
    url: str
    admin_url: str
    extra: list[Proc] = field(default_factory=list)

    def stat(self, name: str) -> int:
        """One counter/gauge from the admin /stats endpoint (0 when absent)."""
        text = httpx.get(f"{self.admin_url}/stats", params={"filter": f"^{name}$"}, timeout=2).text
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    def host_successes(self, cluster: str, address: str) -> int:
        for line in httpx.get(f"{self.admin_url}/clusters", timeout=2).text.splitlines():
            if line.startswith(f"{cluster}::{address}::rq_success::"):
                return int(line.rsplit("::", 1)[1])
        return 0

    def access_log(self) -> list[str]:
        return self.proc.log_path.read_text(errors="replace").splitlines()


def spawn_adapter(run_dir: Path, triton: TritonServer, name: str) -> Adapter:
    port = free_port()
    args = [
        "--port",
        str(port),
        "--triton-grpc-url",
        triton.grpc_url,
        "--triton-metrics-url",
        triton.metrics_url,
    ]
    proc = Proc(name, python_module("inference.adapter", *args), run_dir)
    proc.wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200, 30)
    return Adapter(proc, port)


def spawn_envoy(
    run_dir: Path, name: str, overrides: dict[str, str], wait_ready: bool = True
) -> EnvoyUnderTest:
    port, admin_port = free_port(), free_port()
    values = {"listen_port": str(port), "admin_port": str(admin_port), **overrides}
    config = envoy_launcher.write_config(run_dir / f"{name}.yaml", values)
    proc = Proc(name, envoy_launcher.envoy_args(config, log_level="error"), run_dir)
    envoy = EnvoyUnderTest(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}")
    if wait_ready:
        proc.wait_until(lambda: httpx.get(f"{envoy.url}/ready", timeout=2).status_code == 200, 30)
    else:
        proc.wait_port(port)
    return envoy


def wait_for_priority_0(envoy: EnvoyUnderTest, primary: list[Adapter], fallback: Adapter) -> None:
    """Until priority 0 takes all traffic. Envoy's workers start routing to a host a moment after its
    first health check passes (admin /clusters already says healthy), and meanwhile a share spills
    to priority 1; so probe /ready (same cluster, no key) until every priority-0 host has answered and
    the last 10 probes all stayed off the fallback host."""
    deadline, quiet = time.monotonic() + 30, 0
    while quiet < 10 or not all(envoy.host_successes(CLUSTER, a.address) for a in primary):
        if time.monotonic() > deadline:
            raise TimeoutError(f"priority 0 never took all traffic:\n{envoy.proc.log_tail()}")
        before = envoy.host_successes(CLUSTER, fallback.address)
        httpx.get(f"{envoy.url}/ready", timeout=5)
        quiet = quiet + 1 if envoy.host_successes(CLUSTER, fallback.address) == before else 0


@pytest.fixture(scope="session")
def loose_ratelimit_port(run_dir: Path, redis_url: str) -> Iterator[int]:
    from tests.conftest import grpc_serving

    port = free_port()
    args = ["--grpc-port", str(port), "--rate-limit-minute", str(LOOSE_RATE_LIMIT)]
    args += ["--rate-limit-hour", str(LOOSE_RATE_LIMIT)]
    proc = Proc(
        "ratelimit-loose", python_module("ratelimit_service", *args), run_dir, {"REDIS_URL": redis_url}
    )
    proc.wait_until(lambda: grpc_serving(port), 30, "serving")
    yield port
    proc.stop()


def dead_upstreams() -> dict[str, str]:
    """Template values pointing every upstream at a port nothing listens on (Envoy alone)."""
    names = ("authz_port", "ratelimit_port", "authz_http_port", "ratelimit_http_port", "usage_http_port",
             "adapter_port")  # fmt: skip
    return {name: str(free_port()) for name in names}


def launcher_error(tmp_path: Path, **env: str) -> str:
    """The one line `python -m stack.envoy` exits with under this environment (it must fail)."""
    import os
    import subprocess
    import sys

    from tests.procs import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "stack.envoy", "--config-out", str(tmp_path / "envoy.yaml")],
        env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]

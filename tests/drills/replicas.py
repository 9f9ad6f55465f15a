"""Replicas a drill may kill and start again on the same port (authz or ratelimit sidecars, inference
adapters), the Envoy in front of them, and what Envoy's admin API says about them."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common import probes
from stack import envoy as envoy_launcher
from tests.authz_fixtures import LOOSE, REPLICA_CACHE_TTL_S, write_envoy_config
from tests.envoy_fixtures import EnvoyUnderTest
from tests.inference_fixtures import TritonServer
from tests.procs import Proc, free_port, python_module


@dataclass
class ServiceReplica:
    """One replica on a fixed port; subclasses say how to start it and when it is ready."""

    name: str
    port: int
    run_dir: Path
    proc: Proc | None = field(default=None, init=False)
    starts: int = field(default=0, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def ready(self) -> bool:
        return probes.grpc_serving(self.address)

    def start(self) -> None:
        args, env = self.command()
        self.starts += 1
        self.proc = Proc(f"{self.name}-{self.starts}", args, self.run_dir, env)
        self.proc.wait_until(self.ready, 60, "ready")

    def kill(self, sig: int = signal.SIGKILL) -> int | None:
        """Signal the replica and wait for it to exit; its exit code."""
        assert self.proc is not None
        code = self.proc.stop(sig)
        self.proc = None
        return code


@dataclass
class AuthzReplica(ServiceReplica):
    database_url: str

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {"DATABASE_URL": self.database_url, "AUTHZ_CACHE_TTL": REPLICA_CACHE_TTL_S}
        limits = ("--rate-limit-minute", LOOSE, "--rate-limit-hour", LOOSE)
        return python_module("authz_service", "--grpc-port", str(self.port), "--no-dev-key", *limits), env


Replica = AuthzReplica  # the name tests/drills/test_authz_drills.py imports


@dataclass
class RatelimitReplica(ServiceReplica):
    redis_url: str
    config: Path

    def command(self) -> tuple[list[str], dict[str, str]]:
        args = ("--grpc-port", str(self.port), "--config", str(self.config), "--redis-url", self.redis_url)
        return python_module("ratelimit_service", *args), {}


@dataclass
class AdapterReplica(ServiceReplica):
    triton: TritonServer

    def command(self) -> tuple[list[str], dict[str, str]]:
        args = ("--port", str(self.port), "--triton-grpc-url", self.triton.grpc_url)
        return python_module("inference.adapter", *args, "--triton-metrics-url", self.triton.metrics_url), {}

    def ready(self) -> bool:
        return probes.http_ok(f"http://{self.address}/ready")


@dataclass
class Health:
    admin_url: str
    cluster: str = "authz"
    seen: dict[str, str] = field(default_factory=dict)

    def flags(self) -> dict[str, str]:
        """address → health flags of every host in the cluster."""
        text = httpx.get(f"{self.admin_url}/clusters", timeout=2).text
        prefix = f"{self.cluster}::"
        return {
            line.split("::")[1]: line.rsplit("::", 1)[1]
            for line in text.splitlines()
            if line.startswith(prefix) and "::health_flags::" in line
        }

    def seconds_until(self, address: str, wanted: str, limit: float = 15) -> float:
        """Until `address` is "healthy", "unhealthy" (any flag), or carries the flag `wanted`
        (e.g. "failed_active_hc": the health check, not only outlier detection, marked it down)."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            flags = self.flags().get(address, "")
            if wanted in ("healthy", "unhealthy"):
                reached = (flags == "healthy") == (wanted == "healthy")
            else:
                reached = f"/{wanted}" in flags
            if reached:
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError(f"{address} not {wanted} after {limit}s: {self.flags()}")

    def all_healthy(self) -> bool:
        flags = self.flags()
        return bool(flags) and all(flag == "healthy" for flag in flags.values())


@dataclass
class Fleet:
    """Replicas of one cluster as that cluster's endpoints, behind an Envoy of the real template."""

    replicas: list[ServiceReplica]
    envoy: EnvoyUnderTest
    health: Health

    @property
    def url(self) -> str:
        return self.envoy.url

    def rss(self) -> dict[str, float]:
        procs = [self.envoy.proc, *(r.proc for r in self.replicas if r.proc)]
        return {proc.name: round(peak_rss_mib(proc), 1) for proc in procs}

    def stop(self) -> None:
        """Envoy first, then the replicas."""
        self.envoy.proc.stop()
        stop_replicas(self.replicas)


def stop_replicas(replicas: list[ServiceReplica]) -> None:
    """Every live replica at once: SIGTERM to all, then a second SIGTERM skips a sidecar's drain."""
    live = [r.proc for r in replicas if r.proc is not None]
    for proc in live:
        proc.popen.send_signal(signal.SIGTERM)
    for proc in live:
        proc.stop()


def spawn_fleet(
    run_dir: Path, name: str, cluster: str, replicas: list[ServiceReplica], overrides: dict[str, str]
) -> Fleet:
    """Start `replicas`, then an Envoy whose `cluster` has them as endpoints; wait until it routes."""
    port, admin_port = free_port(), free_port()
    values = {"listen_port": str(port), "admin_port": str(admin_port), **overrides}
    config = write_envoy_config(run_dir / f"{name}.yaml", values, [r.port for r in replicas], cluster)
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        for replica in replicas:
            replica.start()
    except BaseException:
        stop_replicas(replicas)
        raise
    proc = Proc(name, envoy_launcher.envoy_args(config, log_level="error"), run_dir)
    fleet = Fleet(replicas, EnvoyUnderTest(proc, f"http://127.0.0.1:{port}", admin), Health(admin, cluster))
    wanted = {replica.address for replica in replicas}

    def routing() -> bool:
        others = ("authz", "ratelimit", "inference_adapter")
        if not all(Health(admin, other).all_healthy() for other in others if other != cluster):
            return False
        flags = fleet.health.flags()
        return set(flags) == wanted and all(flag == "healthy" for flag in flags.values())

    try:
        proc.wait_until(routing, 30, f"routing to every {cluster} replica")
    except BaseException:
        fleet.stop()
        raise
    return fleet


def peak_rss_mib(proc: Proc | int) -> float:
    """VmHWM (peak resident set) of a live process (a Proc or a PID), MiB."""
    pid = proc if isinstance(proc, int) else proc.popen.pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0

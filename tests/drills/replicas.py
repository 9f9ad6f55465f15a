"""Authz replicas that a drill may kill and start again on the same port, behind their own Envoy."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common import probes
from tests.authz_fixtures import LOOSE, REPLICA_CACHE_TTL_S
from tests.procs import Proc, python_module


@dataclass
class Replica:
    name: str
    port: int
    run_dir: Path
    database_url: str
    proc: Proc | None = None
    starts: int = 0

    def start(self) -> None:
        env = {"DATABASE_URL": self.database_url, "AUTHZ_CACHE_TTL": REPLICA_CACHE_TTL_S}
        args = python_module(
            "authz_service",
            "--grpc-port",
            str(self.port),
            "--no-dev-key",
            "--rate-limit-minute",
            LOOSE,
            "--rate-limit-hour",
            LOOSE,
        )
        self.starts += 1
        self.proc = Proc(f"{self.name}-{self.starts}", args, self.run_dir, env)
        self.proc.wait_until(lambda: probes.grpc_serving(f"127.0.0.1:{self.port}"), 60, "serving")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.stop(sig)
        self.proc = None


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
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if (self.flags().get(address) == "healthy") == (wanted == "healthy"):
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError(f"{address} not {wanted} after {limit}s: {self.flags()}")


def peak_rss_mib(proc: Proc) -> float:
    """VmHWM (peak resident set) of a live process, MiB."""
    for line in Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0

"""The tritonserver process: command line, environment, start, signal forwarding."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.triton.wheel import Wheel


@dataclass(frozen=True)
class Endpoints:
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def local_http_url(self) -> str:
        """Where this machine reaches the HTTP port (a wildcard bind is reached on loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.http_port}"


def server_env(wheel: Wheel, libdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(wheel.libs), str(libdir), env.get("LD_LIBRARY_PATH", "")) if p
    )
    # The stub ignores PYTHONPATH and finds its site-packages through the `python` on PATH.
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def server_command(
    wheel: Wheel, backends: Path, repo: Path, models: Sequence[str], at: Endpoints, log_verbose: int = 0
) -> list[str]:
    return [
        str(wheel.server),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        "--model-control-mode=explicit",
        *(f"--load-model={model}" for model in models),
        "--exit-on-error=true",
        "--strict-readiness=true",
        "--exit-timeout-secs=10",
        f"--http-address={at.host}",
        f"--http-port={at.http_port}",
        f"--grpc-address={at.host}",
        f"--grpc-port={at.grpc_port}",
        f"--metrics-address={at.host}",
        f"--metrics-port={at.metrics_port}",
        "--allow-gpu-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        "--disable-auto-complete-config",
        f"--log-verbose={log_verbose}",
    ]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the launcher dies, so a killed launcher leaves no orphan server."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def start(command: list[str], env: dict[str, str], stopping: threading.Event) -> subprocess.Popen[bytes]:
    """Start the server; SIGTERM/SIGINT to us are forwarded once and set `stopping`."""
    proc = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,  # Ctrl-C reaches it once, through us, not twice
        preexec_fn=_die_with_parent,  # no threads exist yet at fork time
    )

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return proc


def exit_code(returncode: int) -> int:
    """Killed by signal N -> 128 + N, as shells report it."""
    return 128 - returncode if returncode < 0 else returncode

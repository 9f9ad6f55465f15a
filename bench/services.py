"""Every process the benchmark starts, and how it knows each one is ready. Nothing else launches.

The real sidecars (authz_service, ratelimit_service) are configured only through the
environment variables their `--help` documents, so a renamed or removed flag cannot break
the benchmark; adapt this one module when those interfaces change.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from authz_service.sealing import new_master_key
from bench import envoy_configs
from common import probes
from stack import envoy as envoy_launcher
from stack.redis import socket_url
from tests.procs import Proc, free_port, python_module

NO_LIMIT = "1000000000"  # per-minute and per-hour limits nothing in a benchmark reaches
QUIET = {"LOG_LEVEL": "WARNING"}
SIGNING_MASTER_KEY = new_master_key()  # this run's: seals the bench's signing key (bench.keys)


RUN_DIR_MARKER = ".bench-run"


def fresh_run_dir(path: Path) -> None:
    """Empty `path` for a new run's logs; only a folder that a previous run made is ever wiped."""
    if path.exists() and any(path.iterdir()) and not (path / RUN_DIR_MARKER).exists():
        print(f"bench: refusing to wipe {path}: not made by bench (use another --run-dir)", file=sys.stderr)
        raise SystemExit(2)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / RUN_DIR_MARKER).touch()


def http_ok(url: str) -> bool:
    return probes.http_ok(url, timeout=2)


@dataclass(frozen=True)
class Triton:
    http_port: int
    grpc_port: int
    metrics_port: int


class Launcher:
    """Starts processes with their logs in `run_dir`; `close()` stops them all, newest first."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.procs: dict[str, Proc] = {}
        self._stack = ExitStack()

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, args, self.run_dir, env)
        self._stack.callback(proc.stop)
        self.procs[name] = proc
        return proc

    def later(self, callback, *args) -> None:
        self._stack.callback(callback, *args)

    def close(self) -> None:
        self._stack.close()

    # -- Envoy -------------------------------------------------------------------------------

    def envoy(self, name: str, config: Path, ready: Callable[[], bool], *extra: str) -> Proc:
        envoy_launcher.validate(config)
        proc = self.spawn(name, [*envoy_launcher.envoy_args(config), *extra])
        proc.wait_until(ready, 60, "ready")
        return proc

    def tiny_upstream(self) -> int:
        port = free_port()
        config = envoy_configs.write(envoy_configs.tiny_upstream(port), self.run_dir / "upstream.yaml")
        # One worker: it answers from memory, and the cores are for what is being measured.
        self.envoy(
            "upstream", config, lambda: http_ok(f"http://127.0.0.1:{port}/ready"), "--concurrency", "1"
        )
        return port

    # -- stores ------------------------------------------------------------------------------

    def postgres(self) -> str:
        port = free_port()
        # As root, Postgres runs as `nobody`: its folder must be reachable (see tests/conftest.py).
        base = Path(tempfile.mkdtemp(prefix="bench-pg-", dir="/var/tmp"))
        base.chmod(0o755)
        self.later(shutil.rmtree, base, True)
        proc = self.spawn(
            "postgres", python_module("stack.postgres", "--port", str(port), "--dir", str(base))
        )
        proc.wait_port(port, 60)
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def redis(self) -> str:
        """Valkey as `make run` starts it: everything that uses it connects over its unix socket."""
        port, folder = free_port(), self.run_dir / "redis"
        sock_dir = Path(tempfile.mkdtemp(prefix="bench-valkey-"))  # a short path: sockaddr_un
        self.later(shutil.rmtree, sock_dir, True)
        sock = sock_dir / "valkey.sock"
        args = python_module(
            "stack.redis", "--port", str(port), "--dir", str(folder), "--unix-socket", str(sock)
        )
        self.spawn("redis", args).wait_port(port, 15)
        return socket_url(sock) or f"redis://127.0.0.1:{port}/0"

    # -- sidecars ----------------------------------------------------------------------------

    def authz(self, name: str, database_url: str, fused_redis_url: str = "", redis_url: str = "") -> int:
        """A real authz service; with `fused_redis_url` it decides the limits too (fused mode).
        `redis_url`: the replay cache of signed requests (bench.keys makes one signing key)."""
        port = free_port()
        env = {
            **QUIET, "DATABASE_URL": database_url, "AUTHZ_GRPC_PORT": str(port),
            "RATE_LIMIT_MINUTE": NO_LIMIT, "RATE_LIMIT_HOUR": NO_LIMIT,
            "SIGNING_MASTER_KEY": SIGNING_MASTER_KEY, "REDIS_URL": redis_url,
        }  # fmt: skip
        if fused_redis_url:
            env |= {"AUTHZ_FUSED_LIMITS": "1", "REDIS_URL": fused_redis_url}
        proc = self.spawn(name, python_module("authz_service"), env)
        proc.wait_until(lambda: probes.grpc_serving(f"127.0.0.1:{port}"), 60, "serving")
        return port

    def usage_writer(self, database_url: str, log: Path, charge_tokens_into: str = "") -> int:
        """The usage service (python -m usage_service) metering `log`; its HTTP port. With
        `charge_tokens_into` (a Redis URL) it also charges the tokens (GATEWAY_TOKEN_CHARGE=usage)."""
        port = free_port()
        env = {**QUIET, "DATABASE_URL": database_url, "GATEWAY_USAGE_LOG": str(log),
               "USAGE_HTTP_PORT": str(port)}  # fmt: skip
        if charge_tokens_into:
            env |= {"GATEWAY_TOKEN_CHARGE": "usage", "REDIS_URL": charge_tokens_into}
        proc = self.spawn("usage", python_module("usage_service"), env)
        proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 60, "serving")
        return port

    def ratelimit(self, name: str, redis_url: str) -> int:
        port = free_port()
        env = {
            **QUIET, "REDIS_URL": redis_url, "RATELIMIT_GRPC_PORT": str(port),
            "RATE_LIMIT_MINUTE": NO_LIMIT, "RATE_LIMIT_HOUR": NO_LIMIT,
        }  # fmt: skip
        proc = self.spawn(name, python_module("ratelimit_service"), env)
        proc.wait_until(lambda: probes.grpc_serving(f"127.0.0.1:{port}"), 30, "serving")
        return port

    def noop_sidecar(self, kind: str, key_id: str = "key_bench") -> int:
        port = free_port()
        args = python_module("bench.noop_sidecars", kind, "--port", str(port), "--key-id", key_id)
        proc = self.spawn(f"noop-{kind}", args)
        proc.wait_until(lambda: probes.grpc_serving(f"127.0.0.1:{port}"), 30, "serving")
        return port

    # -- baselines and inference -------------------------------------------------------------

    def fastapi_gateway(self, store: str, upstream_port: int, keys_file: Path, redis_url: str = "") -> int:
        port = free_port()
        args = python_module(
            "bench.baselines.fastapi_gateway", "--port", str(port), "--store", store,
            "--upstream", f"http://127.0.0.1:{upstream_port}", "--keys-file", str(keys_file),
            "--rate-limit-minute", NO_LIMIT, "--rate-limit-hour", NO_LIMIT,
        )  # fmt: skip
        proc = self.spawn(f"fastapi-{store}", args, {"REDIS_URL": redis_url} if redis_url else None)
        proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 30, "serving")
        return port

    def triton(self) -> Triton:
        triton = Triton(free_port(), free_port(), free_port())
        args = python_module(
            "inference.triton", "--http-port", str(triton.http_port), "--grpc-port", str(triton.grpc_port),
            "--metrics-port", str(triton.metrics_port), "--work-dir", str(self.run_dir / "triton-work"),
        )  # fmt: skip
        proc = self.spawn("triton", args)
        ready = f"http://127.0.0.1:{triton.http_port}/v2/health/ready"
        proc.wait_until(lambda: http_ok(ready), 180, "ready")
        return triton

    def adapter(self, triton: Triton) -> int:
        port = free_port()
        env = {
            "ADAPTER_PORT": str(port), "ADAPTER_LOG_LEVEL": "warning",
            "TRITON_GRPC_URL": f"127.0.0.1:{triton.grpc_port}",
            "TRITON_METRICS_URL": f"http://127.0.0.1:{triton.metrics_port}/metrics",
        }  # fmt: skip
        proc = self.spawn("adapter", python_module("inference.adapter"), env)
        proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/ready"), 60, "ready")
        return port


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process so far (Linux /proc), None when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (launchers such as stack.postgres fork the real server)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with suppress(OSError):  # the process may be gone already
                queue += [int(child) for child in task.read_text().split()]
    return found


def cpu_snapshot(procs: dict[str, Proc]) -> dict[str, float]:
    """CPU seconds used so far by each live process we started, its children included."""
    snapshot = {}
    for name, proc in procs.items():
        if proc.popen.poll() is None:
            used = [cpu_seconds(pid) for pid in descendants(proc.popen.pid)]
            if used and used[0] is not None:
                snapshot[name] = sum(u for u in used if u is not None)
    return snapshot


def clusters_healthy(admin_url: str, names: set[str]) -> bool:
    """Every host of the named Envoy clusters passes its health check (admin /clusters)."""
    with urllib.request.urlopen(f"{admin_url}/clusters", timeout=2) as reply:
        lines = reply.read().decode().splitlines()
    flags = [line.split("::") for line in lines if "::health_flags::" in line]
    return {f[0] for f in flags} >= names and all(f[-1] == "healthy" for f in flags if f[0] in names)


def envoy_counters(admin_url: str, pattern: str) -> dict[str, int]:
    """Envoy counters whose names match the regex `pattern` (admin /stats?filter=)."""
    query = urllib.parse.urlencode({"filter": pattern, "usedonly": ""})
    with urllib.request.urlopen(f"{admin_url}/stats?{query}", timeout=5) as reply:
        text = reply.read().decode()
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            counters[name] = int(value)
    return counters

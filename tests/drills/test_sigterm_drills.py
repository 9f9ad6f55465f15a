"""SIGTERM under load to an inference adapter (one of two behind Envoy) and to the Envoy launcher.

(c) uvicorn's graceful shutdown finishes the requests the victim holds and closes its listener;
Envoy retries refused connections on the other adapter. (d) Envoy alone drops every request in
flight on SIGTERM; `python -m stack.envoy` drains first (stops accepting, waits for the requests
in flight, then stops Envoy). The sidecar drains are in test_authz_drills / test_ratelimit_drills.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from stack import envoy as envoy_launcher
from tests.drills.conftest import DrillLog, Row
from tests.drills.load import Load
from tests.drills.replicas import AdapterReplica, Fleet, Health, peak_rss_mib, spawn_fleet
from tests.inference_fixtures import TritonServer, child_pids
from tests.procs import Proc, free_port, python_module

ADAPTER_CLIENTS = 4
LOAD_SECONDS = 3.0
LONG_TEXT = "a sentence long enough to keep the model busy for a while, " * 20
SLOW_S = 1.0  # how long the slow upstream takes to answer an API call
SLOW_CLIENTS = 6
DRAIN_LIMIT_S = 5


@pytest.fixture(scope="module")
def adapters(
    run_dir: Path,
    triton_server: TritonServer,
    loose_authz_port: int,
    loose_ratelimit_port: int,
    authz_http_port: int,
) -> Iterator[Fleet]:
    """Two adapters on the session Triton as the inference_adapter cluster of one Envoy."""
    replicas = [AdapterReplica(f"drill-adapter-{i}", free_port(), run_dir, triton_server) for i in (1, 2)]
    overrides = {
        "authz_port": str(loose_authz_port),
        "ratelimit_port": str(loose_ratelimit_port),
        "authz_http_port": str(authz_http_port),
    }
    fleet = spawn_fleet(run_dir, "drill-adapter-envoy", "inference_adapter", replicas, overrides)
    yield fleet
    fleet.stop()


def wait_for_active(fleet: Fleet, address: str, limit: float = 5) -> int:
    """Until Envoy has a request in flight on `address`; how many."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        prefix = f"inference_adapter::{address}::rq_active::"
        for line in httpx.get(f"{fleet.envoy.admin_url}/clusters", timeout=2).text.splitlines():
            if line.startswith(prefix) and int(line[len(prefix) :]) > 0:
                return int(line[len(prefix) :])
        time.sleep(0.005)
    return 0


def test_sigterm_to_one_inference_adapter_under_load(adapters: Fleet, key: str, drill_log: DrillLog) -> None:
    """The victim finishes what it holds and exits; Envoy sends the rest to the other adapter."""
    clients = [("embed", key)] * ADAPTER_CLIENTS
    load = Load(adapters.url, clients, timeout=10, text=LONG_TEXT).start(warm_up=1.0)
    victim = adapters.replicas[0]
    held = wait_for_active(adapters, victim.address)
    assert victim.proc is not None
    victim_log = victim.proc.log_path
    started = time.monotonic()
    exit_code = victim.kill(signal.SIGTERM)
    stopped = time.monotonic() - started
    removed = adapters.health.seconds_until(victim.address, "unhealthy")
    time.sleep(max(0.0, LOAD_SECONDS - stopped - removed))
    load.stop()
    victim.start()
    back = adapters.health.seconds_until(victim.address, "healthy")
    tally = load.snapshot("embed")
    failed = load.outside({200})
    failures = ", ".join(f"{k}: {v}" for k, v in tally.items() if k not in ("sent", "bad_shape", 200))
    assert held > 0, "no request was in flight on the victim when it got SIGTERM"
    # uvicorn (>= 0.29) re-raises the signal once its graceful shutdown is done: status -SIGTERM.
    graceful = "Finished server process" in victim_log.read_text()
    assert graceful and exit_code in (0, -signal.SIGTERM) and stopped < 10, (exit_code, stopped)
    assert tally["bad_shape"] == 0 and tally["transport"] == 0, tally
    # uvicorn answers what it holds; a request Envoy sends on a pooled connection in the instant the
    # adapter closes it is reset before any response (not retried: POST), hence "≤ clients".
    assert failed <= ADAPTER_CLIENTS, tally
    drill_log.record(
        Row(
            f"fault: SIGTERM to one of two inference adapters under load, {ADAPTER_CLIENTS} clients",
            "requests in flight on the victim finish (uvicorn graceful shutdown); new ones go to the "
            "other adapter (Envoy retries refused connections); clean exit",
            f"shut down gracefully in {stopped:.2f} s (exit status {exit_code}: uvicorn re-raises "
            f"SIGTERM after its shutdown); out of the cluster after {removed:.2f} s more; "
            f"{held} request(s) in flight on it at the signal; {failed} failed of {tally['sent']} "
            f"({failures or 'all 200'}); "
            f"healthy again {back:.2f} s after restart",
            "tests/drills/test_sigterm_drills.py",
            sent=tally["sent"],
            failed=failed,
            peak_rss_mib=adapters.rss(),
        )
    )


class _Slow(BaseHTTPRequestHandler):
    """POST: 200 after SLOW_S (a slow inference call). GET (health checks): 200 at once."""

    protocol_version = "HTTP/1.1"

    def _reply(self, delay: float) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        time.sleep(delay)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        self._reply(0)

    def do_POST(self) -> None:
        self._reply(SLOW_S)

    def log_message(self, *_: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class Gateway:
    """An Envoy of the project's template in front of the slow upstream, started one of two ways."""

    def __init__(self, run_dir: Path, name: str, values: dict[str, str], launcher: bool) -> None:
        self.port, self.admin_port = free_port(), free_port()
        values = {**values, "listen_port": str(self.port), "admin_port": str(self.admin_port)}
        self.url, self.admin = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.admin_port}"
        if launcher:  # the product's way: python -m stack.envoy, configured by the environment
            env = {envoy_launcher.renderer().DEFAULTS[k][0]: v for k, v in values.items()}
            env[envoy_launcher.DRAIN_ENV] = str(DRAIN_LIMIT_S)
            args = python_module(
                "stack.envoy", "--config-out", str(run_dir / f"{name}.yaml"), "--log-level", "error"
            )
            self.proc = Proc(name, args, run_dir, env)
        else:
            config = envoy_launcher.write_config(run_dir / f"{name}.yaml", values)
            self.proc = Proc(name, envoy_launcher.envoy_args(config, log_level="error"), run_dir)
        clusters = ("authz", "ratelimit", "inference_adapter")
        self.proc.wait_until(
            lambda: all(Health(self.admin, c).all_healthy() for c in clusters), 30, "routing"
        )

    def in_flight(self) -> int:
        return envoy_launcher.active_requests(self.admin)


def slow_calls(gateway: Gateway, key: str) -> tuple[list[int | str], list[threading.Thread]]:
    """SLOW_CLIENTS slow API calls, one connection each, started and seen in flight in Envoy."""
    results: list[int | str] = []

    def call() -> None:
        try:
            response = httpx.post(
                f"{gateway.url}/v1/embed", json={"input_text": "slow"}, headers={"X-API-Key": key}, timeout=10
            )
            results.append(response.status_code)
        except httpx.TransportError as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=call) for _ in range(SLOW_CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while gateway.in_flight() < SLOW_CLIENTS:
        assert time.monotonic() < deadline, f"only {gateway.in_flight()} calls in flight"
        time.sleep(0.02)
    return results, threads


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_to_envoy_launcher_drains_in_flight_requests(
    run_dir: Path,
    slow_upstream: int,
    loose_authz_port: int,
    loose_ratelimit_port: int,
    authz_http_port: int,
    key: str,
    drill_log: DrillLog,
) -> None:
    values = {
        "authz_port": str(loose_authz_port),
        "ratelimit_port": str(loose_ratelimit_port),
        "authz_http_port": str(authz_http_port),
        "adapter_port": str(slow_upstream),
    }
    # What Envoy itself does with SIGTERM: exits at once, dropping every request in flight.
    bare = Gateway(run_dir, "drill-envoy-bare", values, launcher=False)
    try:
        bare_results, threads = slow_calls(bare, key)
        bare.proc.stop(signal.SIGTERM)
        for thread in threads:
            thread.join(15)
    finally:
        bare.proc.stop()
    dropped = sum(result != 200 for result in bare_results)

    gateway = Gateway(run_dir, "drill-envoy-launcher", values, launcher=True)
    try:
        envoy_pid = child_pids(gateway.proc.popen.pid)[0]
        results, threads = slow_calls(gateway, key)
        rss = {
            gateway.proc.name: round(peak_rss_mib(gateway.proc), 1),
            "envoy": round(peak_rss_mib(envoy_pid), 1),
        }
        started = time.monotonic()
        gateway.proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 1
        while not refused(gateway.port):
            assert time.monotonic() < deadline, "the listener still accepts connections 1 s after SIGTERM"
            time.sleep(0.02)
        refused_after = time.monotonic() - started
        exit_code = gateway.proc.popen.wait(DRAIN_LIMIT_S + 10)
        exited_after = time.monotonic() - started
        for thread in threads:
            thread.join(15)
    finally:
        gateway.proc.stop()
    assert dropped == SLOW_CLIENTS, f"bare Envoy was expected to drop its in-flight requests: {bare_results}"
    assert results == [200] * SLOW_CLIENTS, results
    assert exit_code == 0 and exited_after < DRAIN_LIMIT_S + 2, (exit_code, exited_after)
    assert not Path(f"/proc/{envoy_pid}").exists(), "Envoy outlived its launcher"
    drill_log.record(
        Row(
            f"fault: SIGTERM to the Envoy launcher (python -m stack.envoy) with {SLOW_CLIENTS} slow "
            f"({SLOW_S:.0f} s) requests in flight",
            "requests in flight complete with 200; new connections refused at once; launcher exits 0",
            f"{SLOW_CLIENTS}/{SLOW_CLIENTS} answered 200; new connections refused {refused_after:.2f} s "
            f"after SIGTERM; launcher exited 0 after {exited_after:.2f} s (drain limit {DRAIN_LIMIT_S} s). "
            f"Without the launcher Envoy exits at once on SIGTERM: {dropped}/{SLOW_CLIENTS} dropped",
            "tests/drills/test_sigterm_drills.py",
            sent=SLOW_CLIENTS,
            failed=SLOW_CLIENTS - results.count(200),
            peak_rss_mib=rss,
        )
    )

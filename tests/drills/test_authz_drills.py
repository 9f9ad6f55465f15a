"""Fault drills on the authz sidecar: all replicas killed, one of two killed. Real Envoy, real
replicas on the session Postgres, the echo server as upstream, a loose rate limiter."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.authz_fixtures import spawn_gateway
from tests.drills.conftest import DrillLog, Row
from tests.drills.replicas import Health, Replica, peak_rss_mib
from tests.drills.wire import is_error_shape
from tests.procs import Proc, free_port

LOAD_SECONDS = 6.0
CLIENTS = 4  # so that calls are in flight on the victim when it goes
TALLY_LOCK = threading.Lock()


class Fleet:
    def __init__(self, replicas: list[Replica], envoy: Proc, url: str, admin: str) -> None:
        self.replicas, self.envoy, self.url = replicas, envoy, url
        self.health = Health(admin)

    def rss(self) -> dict[str, float]:
        procs = [self.envoy, *(r.proc for r in self.replicas if r.proc)]
        return {proc.name: round(peak_rss_mib(proc), 1) for proc in procs}


@pytest.fixture(scope="module")
def fleet(
    run_dir: Path, database_url: str, authz_http_port: int, loose_ratelimit_port: int, echo_upstream: int
) -> Iterator[Fleet]:
    replicas = [Replica(f"drill-authz-{i}", free_port(), run_dir, database_url) for i in (1, 2)]
    for replica in replicas:
        replica.start()
    envoy, url, admin = spawn_gateway(
        run_dir,
        "drill-authz-envoy",
        [r.port for r in replicas],
        authz_http_port,
        loose_ratelimit_port,
        echo_upstream,
    )
    yield Fleet(replicas, envoy, url, admin)
    envoy.stop()
    for replica in replicas:
        if replica.proc:
            replica.proc.stop()


def load(url: str, key: str, stop: threading.Event, tally: Counter) -> None:
    """One client sending requests back to back; counts statuses and non-JSON errors."""
    with httpx.Client(base_url=url, timeout=5, headers={"Authorization": f"Bearer {key}"}) as http:
        while not stop.is_set():
            response = http.post("/v1/embed", json={"input_text": "x"})
            with TALLY_LOCK:  # several client threads share one tally
                tally["sent"] += 1
                tally[response.status_code] += 1
                tally["bad_shape"] += not is_error_shape(response.status_code, response.content)


def test_all_authz_replicas_killed_fails_closed_then_recovers(
    fleet: Fleet, key: str, drill_log: DrillLog
) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.post(f"{fleet.url}/v1/embed", json={}, headers=auth, timeout=5).status_code == 200
    for replica in fleet.replicas:
        replica.kill()
    statuses = Counter()
    for _ in range(30):
        response = httpx.post(f"{fleet.url}/v1/embed", json={}, headers=auth, timeout=5)
        statuses[response.status_code] += 1
        assert response.status_code == 503 and is_error_shape(503, response.content), response.text
    for replica in fleet.replicas:
        replica.start()
    started = time.monotonic()
    while httpx.post(f"{fleet.url}/v1/embed", json={}, headers=auth, timeout=5).status_code != 200:
        assert time.monotonic() - started < 15, "no recovery after restarting the replicas"
        time.sleep(0.05)
    recovery = time.monotonic() - started
    drill_log.record(
        Row(
            "fault: every authz replica killed",
            "JSON 503 (fail closed), never 200; 200 after restart",
            f"30/30 JSON 503 while down; first 200 {recovery:.2f} s after both were serving again",
            "tests/drills/test_authz_drills.py",
            sent=31,
            auth_bypasses=statuses[200],
            peak_rss_mib=fleet.rss(),
        )
    )


def start_load(fleet: Fleet, key: str) -> tuple[threading.Event, Counter, list[threading.Thread]]:
    """Both replicas healthy, then CLIENTS threads keeping requests flowing (1 s warm-up)."""
    for replica in fleet.replicas:
        fleet.health.seconds_until(f"127.0.0.1:{replica.port}", "healthy")
    stop, tally = threading.Event(), Counter()
    clients = [threading.Thread(target=load, args=(fleet.url, key, stop, tally)) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    time.sleep(1)
    return stop, tally, clients


def stop_load(stop: threading.Event, clients: list[threading.Thread]) -> None:
    stop.set()
    for client in clients:
        client.join(10)


def test_one_of_two_authz_replicas_killed_under_load(fleet: Fleet, key: str, drill_log: DrillLog) -> None:
    stop, tally, clients = start_load(fleet, key)
    victim = fleet.replicas[0]
    victim.kill()
    removed = fleet.health.seconds_until(f"127.0.0.1:{victim.port}", "unhealthy")
    time.sleep(max(0.0, LOAD_SECONDS - removed))
    errors_after_removal = Counter()
    before = dict(tally)
    time.sleep(1)
    errors_after_removal.update({k: tally[k] - before.get(k, 0) for k in tally})
    stop_load(stop, clients)
    victim.start()
    back = fleet.health.seconds_until(f"127.0.0.1:{victim.port}", "healthy")
    failed = tally["sent"] - tally[200]
    assert tally["bad_shape"] == 0 and not any(isinstance(k, int) and k not in (200, 503) for k in tally), (
        tally
    )
    assert errors_after_removal[200] == errors_after_removal["sent"] > 0, errors_after_removal
    # At most the checks in flight on the victim may fail; Envoy retries the rest elsewhere.
    assert failed <= CLIENTS, tally
    drill_log.record(
        Row(
            f"fault: one of two authz replicas killed (SIGKILL) under load, {CLIENTS} clients",
            "no errors beyond the in-flight calls; ejected at once; back when restarted",
            f"ejected after {removed:.2f} s (outlier detection on the first refused connection); "
            f"{failed} JSON 503 of {tally['sent']} (check retried on the other replica); "
            f"healthy again {back:.2f} s after restart",
            "tests/drills/test_authz_drills.py",
            sent=tally["sent"],
            failed=failed,
            peak_rss_mib=fleet.rss(),
        )
    )


def test_sigterm_to_one_authz_replica_under_load_drains(fleet: Fleet, key: str, drill_log: DrillLog) -> None:
    """SIGTERM (not a crash): the replica drains its in-flight checks and exits; the other serves."""
    stop, tally, clients = start_load(fleet, key)
    victim = fleet.replicas[1]
    assert victim.proc is not None
    started = time.monotonic()
    exit_code = victim.proc.stop(signal.SIGTERM)
    drained = time.monotonic() - started
    victim.proc = None
    fleet.health.seconds_until(f"127.0.0.1:{victim.port}", "unhealthy")
    before = dict(tally)
    time.sleep(1)
    after_removal = {k: tally[k] - before.get(k, 0) for k in ("sent", 200)}
    stop_load(stop, clients)
    victim.start()
    fleet.health.seconds_until(f"127.0.0.1:{victim.port}", "healthy")
    failed = tally["sent"] - tally[200]
    assert exit_code == 0 and drained < 8, (exit_code, drained)
    assert tally["bad_shape"] == 0 and set(tally) <= {"sent", "bad_shape", 200, 503}, tally
    assert after_removal["sent"] == after_removal[200] > 0, after_removal
    assert failed == 0, tally
    drill_log.record(
        Row(
            f"fault: SIGTERM to one of two authz replicas under load, {CLIENTS} clients",
            "reports NOT_SERVING, serves until Envoy drops it, exits 0; no failed request",
            f"exited 0 after a {drained:.2f} s drain (NOT_SERVING until Envoy's health check marked "
            f"it down); {failed} failed of {tally['sent']}",
            "tests/drills/test_authz_drills.py",
            sent=tally["sent"],
            failed=failed,
            peak_rss_mib=fleet.rss(),
        )
    )

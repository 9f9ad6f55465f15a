"""Fault drills on the ratelimit sidecar: one of two replicas SIGKILLed, one SIGTERMed, under load.

Real Envoy (the project's template: failure_mode_deny false by default, so a failed call lets its
request through unlimited), two ratelimit replicas on the session Valkey as endpoints of the
ratelimit cluster, a loose authz replica, the echo server as upstream. Half the clients use a key
whose hourly limit is exhausted before the fault: every 200 beyond that limit is over-admission.
The replicas count that key's window with `sliding_log` (exact), so the 200s can be held to it.
"""

from __future__ import annotations

import signal
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.authz_fixtures import create_key
from tests.drills.conftest import DrillLog, Row
from tests.drills.load import Load
from tests.drills.replicas import Fleet, RatelimitReplica, spawn_fleet
from tests.procs import free_port

SMALL_LIMIT = 60  # requests per hour for the "small" key: exhausted within the first second of load
LOAD_SECONDS = 3.0
CLIENTS_PER_KEY = 2  # so that calls are in flight on the victim when it goes
ROUTE_STATS = "cluster.inference_adapter.ratelimit"  # the ratelimit filter's stats on the /v1/ route
CONFIG = """\
    # The built-in config's shape with an exact window: sliding_log counts admitted requests
    # in (now - 1 h, now], so no bucket boundary can admit more than the limit.
    domain: gateway
    failure_mode: allow
    algorithm: sliding_log
    descriptors:
      - key: route
        value: v1
        descriptors:
          - key: plan
            descriptors:
              - key: api_key
                rate_limits:
                  - {unit: hour, requests_per_unit: 1000000}
"""


@pytest.fixture(scope="module")
def fleet(
    run_dir: Path, redis_url: str, loose_authz_port: int, authz_http_port: int, echo_upstream: int
) -> Iterator[Fleet]:
    config = run_dir / "drill-ratelimit.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    replicas = [
        RatelimitReplica(f"drill-ratelimit-{i}", free_port(), run_dir, redis_url, config) for i in (1, 2)
    ]
    overrides = {
        "authz_port": str(loose_authz_port),
        "authz_http_port": str(authz_http_port),
        "adapter_port": str(echo_upstream),
    }
    fleet = spawn_fleet(run_dir, "drill-ratelimit-envoy", "ratelimit", replicas, overrides)
    yield fleet
    fleet.stop()


@dataclass
class Keys:
    loose: str
    small: str


@pytest.fixture
def keys(database_url: str, drill_log: DrillLog) -> Keys:
    loose, _ = create_key(database_url)
    small, _ = create_key(database_url, rate_limit_hour=SMALL_LIMIT)
    drill_log.keys.update((loose, small))
    return Keys(loose, small)


def start_load(fleet: Fleet, keys: Keys, steady: float = 0.5) -> Load:
    """Both replicas healthy, then the load for at least `steady` seconds and until the small key's
    limit is used up."""
    for replica in fleet.replicas:
        fleet.health.seconds_until(replica.address, "healthy")
    clients = [("loose", keys.loose), ("small", keys.small)] * CLIENTS_PER_KEY
    load = Load(fleet.url, clients).start(warm_up=steady)
    deadline = time.monotonic() + 10
    while load.snapshot("small")[429] == 0:
        assert time.monotonic() < deadline, f"the small key never reached its limit: {load.summary()}"
        time.sleep(0.05)
    return load


def route_stats(fleet: Fleet) -> dict[str, int]:
    """Counters this drill accounts for: the ratelimit filter's failed calls on the /v1/ route and
    the ratelimit cluster's retries refused by its circuit breaker (default max_retries: 3) or
    cut by a timeout."""
    names = {
        "error": f"{ROUTE_STATS}.error",
        "failure_mode_allowed": f"{ROUTE_STATS}.failure_mode_allowed",
        "retry_overflow": "cluster.ratelimit.upstream_rq_retry_overflow",
        "retried": "cluster.ratelimit.upstream_rq_retry",
    }
    stats = {name: fleet.envoy.stat(stat) for name, stat in names.items()}
    # A gRPC call with a retry policy times out per try: Envoy counts it under either name.
    timeouts = ("upstream_rq_timeout", "upstream_rq_per_try_timeout")
    stats["timeout"] = sum(fleet.envoy.stat(f"cluster.ratelimit.{name}") for name in timeouts)
    return stats


def stats_since(fleet: Fleet, before: dict[str, int]) -> dict[str, int]:
    return {name: value - before[name] for name, value in route_stats(fleet).items()}


def served_after_removal(load: Load) -> dict[str, int]:
    """What the load got during one second with the victim out of the cluster."""
    before = {label: load.snapshot(label) for label in ("loose", "small")}
    time.sleep(1)
    after = {label: load.snapshot(label) for label in ("loose", "small")}
    return {
        "sent": sum(after[k]["sent"] - before[k]["sent"] for k in after),
        "answered": after["loose"][200] - before["loose"][200] + after["small"][429] - before["small"][429],
    }


def check_answers(load: Load) -> tuple[int, int]:
    """(failed, over_admitted): answers other than 200/429, and the small key's 200s beyond its limit."""
    small = load.snapshot("small")
    assert load.total("bad_shape") == 0, load.summary()
    assert small[200] >= SMALL_LIMIT, f"the small key could not use its quota: {small}"
    return load.outside({200, 429}), small[200] - SMALL_LIMIT


def test_one_of_two_ratelimit_replicas_killed_under_load(
    fleet: Fleet, keys: Keys, drill_log: DrillLog
) -> None:
    stats_before = route_stats(fleet)
    load = start_load(fleet, keys)
    victim = fleet.replicas[0]
    victim.kill()
    removed = fleet.health.seconds_until(victim.address, "unhealthy")
    checked_down = removed + fleet.health.seconds_until(victim.address, "failed_active_hc")
    time.sleep(max(0.0, LOAD_SECONDS - checked_down))
    after_removal = served_after_removal(load)
    load.stop()
    victim.start()
    back = fleet.health.seconds_until(victim.address, "healthy")
    stats = stats_since(fleet, stats_before)
    failed, over_admitted = check_answers(load)
    in_flight_bound = len(load.clients)
    assert after_removal["answered"] == after_removal["sent"] > 0, (after_removal, stats, load.summary())
    # failure_mode_deny false: a failed call lets its request through, so clients see no error...
    assert failed == 0 and stats["failure_mode_allowed"] == stats["error"], (stats, load.summary())
    # ...and every 200 beyond the limit is one of those calls: the limiter itself stays exact.
    assert over_admitted <= stats["failure_mode_allowed"], (stats, load.summary())
    # Calls in flight on the victim are reset and not retried (the service may have counted them):
    # one per client at most. Connection failures are retried on the other replica (the cluster
    # allows 100 concurrent retries); a call that times out on a loaded machine is counted apart.
    assert stats["retry_overflow"] == 0, (stats, load.summary())
    assert stats["error"] <= in_flight_bound + stats["timeout"], (stats, load.summary())
    gaps = []
    if over_admitted:
        gaps.append(
            f"{over_admitted} over-admitted: failed ratelimit calls fail open (failure_mode_deny false) "
            "and the key was already over its limit"
        )
    gap = f"GAP: {'; '.join(gaps)}. " if gaps else ""
    drill_log.record(
        Row(
            f"fault: one of two ratelimit replicas killed (SIGKILL) under load, {in_flight_bound} clients",
            "no errors beyond the in-flight calls; limit still exact (200s of an exhausted key = limit); "
            "ejected at once; back when restarted",
            f"{gap}Ejected after {removed:.2f} s, health check down after {checked_down:.2f} s; "
            f"{failed} failed of {load.total('sent')} (fail open); "
            f"{stats['error']} ratelimit call(s) failed ({in_flight_bound} clients in flight) and their "
            f"requests went through unchecked; the exhausted key got {load.snapshot('small')[200]} "
            f"200s for a limit of {SMALL_LIMIT}; healthy again {back:.2f} s after restart",
            "tests/drills/test_ratelimit_drills.py",
            sent=load.total("sent"),
            failed=failed,
            over_admitted=over_admitted,
            peak_rss_mib=fleet.rss(),
        )
    )


def test_sigterm_to_one_ratelimit_replica_under_load_drains(
    fleet: Fleet, keys: Keys, drill_log: DrillLog
) -> None:
    """SIGTERM (not a crash): NOT_SERVING until Envoy's health check drops it, then exit 0."""
    stats_before = route_stats(fleet)
    # A replica drains only for the health checkers it has seen twice (common/drain.py); Envoy checks
    # every 2 s without traffic and every 1 s with: 2.5 s of load make Envoy a known watcher.
    load = start_load(fleet, keys, steady=2.5)
    victim = fleet.replicas[1]
    started = time.monotonic()
    exit_code = victim.kill(signal.SIGTERM)
    drained = time.monotonic() - started
    fleet.health.seconds_until(victim.address, "unhealthy")
    after_removal = served_after_removal(load)
    load.stop()
    victim.start()
    fleet.health.seconds_until(victim.address, "healthy")
    stats = stats_since(fleet, stats_before)
    failed, over_admitted = check_answers(load)
    assert exit_code == 0 and drained < 8, (exit_code, drained)
    assert after_removal["answered"] == after_removal["sent"] > 0, (after_removal, stats, load.summary())
    assert failed == 0 and over_admitted == 0 and stats["failure_mode_allowed"] == 0, (stats, load.summary())
    drill_log.record(
        Row(
            f"fault: SIGTERM to one of two ratelimit replicas under load, {len(load.clients)} clients",
            "reports NOT_SERVING, serves until Envoy drops it, exits 0; no failed call, limit exact",
            f"exited 0 after a {drained:.2f} s drain; {failed} failed of {load.total('sent')}; "
            f"{stats['error']} ratelimit call(s) failed; the exhausted key got "
            f"{load.snapshot('small')[200]} 200s for a limit of {SMALL_LIMIT}",
            "tests/drills/test_ratelimit_drills.py",
            sent=load.total("sent"),
            failed=failed,
            over_admitted=over_admitted,
            peak_rss_mib=fleet.rss(),
        )
    )

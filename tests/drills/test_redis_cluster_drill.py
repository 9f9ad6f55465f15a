"""Fault drill: one master of a 3-master + 3-replica Valkey Cluster SIGKILLed under load.

A real ratelimit_service process (redis+cluster:// URL, default 0.1 s store timeout,
failure_mode deny) is driven over gRPC by a few clients on keys spread over every master.
While the cluster fails over, calls must get the failure mode (never a gRPC error, never a
hang); once the replica is promoted, the store decides again, also for the slots that moved,
and a fresh key on the promoted node admits exactly its limit.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse
from redis.crc import key_slot

from ratelimit_service.plan import counter_base
from tests.drills.cluster_topology import FailoverWatch, Topology, topology
from tests.drills.conftest import DrillLog, Row
from tests.drills.replicas import peak_rss_mib
from tests.integration.test_ratelimit_service import metric
from tests.ratelimit_fixtures import RateLimitProcess, ValkeyCluster, rl_request, start_cluster, write_config

NODE_TIMEOUT_MS = 1000  # the victim is flagged FAIL in ~1-2 s, its replica promoted ~1 s later
CLIENTS = 4
KEYS_PER_MASTER = 3
WARMUP_S = 1.0
STABLE_S = 1.0  # every key decided by the store for this long after the promotion: recovered
RECOVERY_LIMIT_S = 20.0
ENVOY_TIMEOUT_S = 0.25  # envoy.yaml.tmpl: the ratelimit filter's timeout
# The store bounds a cluster call at 2 x 0.1 s; the rest is slack for a shared 2-core machine.
LATENCY_LIMIT_S = 0.5
FRESH_LIMIT, FRESH_CALLS = 20, 40
CONFIG = f"""
domain: drill
failure_mode: deny
descriptors:
  - key: load
    rate_limit: {{unit: hour, requests_per_unit: 1000000}}
  - key: fresh
    rate_limit: {{unit: hour, requests_per_unit: {FRESH_LIMIT}}}
"""
ADMITTED, DENIED, FAILURE_MODE, UNEXPECTED = "admitted", "denied", "failure_mode", "unexpected"


def slot_of(key: str, value: str) -> int:
    return key_slot(counter_base("drill", [(key, value)]).encode())


def outcome(response: RateLimitResponse) -> str:
    """Decided (admitted/denied, with quota headers), the failure mode, or anything else."""
    store = response.dynamic_metadata.fields.get("store")
    if store is not None:
        down = store.string_value == "unavailable" and response.overall_code == RateLimitResponse.OVER_LIMIT
        return FAILURE_MODE if down else UNEXPECTED
    if not any(h.key == "x-ratelimit-remaining" for h in response.response_headers_to_add):
        return UNEXPECTED  # no window was decided: not what a store-backed answer looks like
    return ADMITTED if response.overall_code == RateLimitResponse.OK else DENIED


@dataclass(frozen=True)
class Sample:
    sent: float  # monotonic
    latency: float
    value: str
    outcome: str  # ADMITTED, DENIED, FAILURE_MODE, UNEXPECTED or grpc:<CODE>


def call(stub, key: str, value: str) -> Sample:
    started = time.monotonic()
    try:
        result = outcome(stub.ShouldRateLimit(rl_request("drill", [(key, value)]), timeout=5))
    except grpc.RpcError as exc:
        result = f"grpc:{exc.code().name}"
    return Sample(started, time.monotonic() - started, value, result)


class Load:
    """CLIENTS threads calling round-robin over `values` until stopped; every call kept as a Sample."""

    def __init__(self, service: RateLimitProcess, values: list[str]) -> None:
        self.samples: list[Sample] = []  # list.append is atomic: the threads share it
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(service.stub(), values[n:] + values[:n]), daemon=True)
            for n in range(CLIENTS)
        ]
        for thread in self._threads:
            thread.start()

    def _client(self, stub, values: list[str]) -> None:
        i = 0
        while not self._stop.is_set():
            self.samples.append(call(stub, "load", values[i % len(values)]))
            i += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def spread_keys(topo: Topology) -> dict[str, int]:
    """KEYS_PER_MASTER load keys on every master: value → port of the master owning its slot."""
    keys: dict[str, int] = {}
    per_master: Counter = Counter()
    i = 0
    while min(per_master[p] for p in topo.masters) < KEYS_PER_MASTER:
        owner = topo.owner(slot_of("load", f"k{i}"))
        if per_master[owner] < KEYS_PER_MASTER:
            keys[f"k{i}"] = owner
            per_master[owner] += 1
        i += 1
    return keys


def resumed_at(samples: list[Sample], values: list[str], since: float) -> float | None:
    """Seconds after `since` from which the store decided every call on every key (None: not yet)."""
    latest = 0.0
    for value in values:
        mine = [s for s in samples if s.value == value and s.sent >= since]
        last_bad = max((s.sent for s in mine if s.outcome != ADMITTED), default=since)
        good = [s.sent for s in mine if s.outcome == ADMITTED and s.sent > last_bad]
        if not good:
            return None
        latest = max(latest, min(good) - since)
    return latest


def wait_recovered(load: Load, values: list[str], watch: FailoverWatch, killed: float) -> float:
    """Keep the load on until the store has decided every key for STABLE_S after the promotion."""
    while True:
        elapsed = time.monotonic() - killed
        tally = Counter(s.outcome for s in load.samples)
        assert elapsed < RECOVERY_LIMIT_S, f"no recovery {elapsed:.1f} s after the kill: {tally}"
        resumed = resumed_at(list(load.samples), values, killed)
        if watch.promoted_at is not None and resumed is not None and elapsed - resumed >= STABLE_S:
            return resumed
        time.sleep(0.1)


def burst(service: RateLimitProcess, value: str) -> Counter:
    """FRESH_CALLS calls on one key from CLIENTS threads at once."""
    stub = service.stub()
    with ThreadPoolExecutor(CLIENTS) as pool:
        return Counter(s.outcome for s in pool.map(lambda _: call(stub, "fresh", value), range(FRESH_CALLS)))


@pytest.fixture
def cluster(run_dir: Path) -> Iterator[ValkeyCluster]:
    cluster = start_cluster(run_dir, replicas=1, node_timeout_ms=NODE_TIMEOUT_MS)
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_cluster_master_killed_under_load_fails_over(
    cluster: ValkeyCluster, ratelimit_factory, tmp_path: Path, drill_log: DrillLog
) -> None:
    topo = topology(cluster.ports[0])
    assert len(topo.masters) == 3 and len(topo.replica_of) == 3, topo
    victim = min(topo.masters)
    promoted = topo.replica_of[victim]
    keys = spread_keys(topo)
    moved = {value for value, owner in keys.items() if owner == victim}
    service = ratelimit_factory(write_config(tmp_path / "drill.yaml", CONFIG), cluster.url)

    load = Load(service, list(keys))
    time.sleep(WARMUP_S)
    killed = time.monotonic()
    cluster.procs[victim].stop(signal.SIGKILL)
    watch = FailoverWatch(next(p for p in topo.masters if p != victim), victim, promoted, killed)
    watch.start()
    try:
        resumed = wait_recovered(load, list(keys), watch, killed)
    finally:
        load.stop()
    samples = list(load.samples)
    tally = Counter(s.outcome for s in samples)
    before = Counter(s.outcome for s in samples if s.sent + s.latency < killed)
    slowest = max(s.latency for s in samples)
    late = sum(s.latency > ENVOY_TIMEOUT_S for s in samples)
    moved_failed = sum(s.value in moved and s.outcome == FAILURE_MODE for s in samples)

    # A fresh key whose slot moved to the promoted replica: exactly its limit admitted, there.
    fresh = next(
        v for v in (f"fresh-{i}" for i in range(10_000)) if topo.owner(slot_of("fresh", v)) == victim
    )
    fresh_tally = burst(service, fresh)
    with redis.Redis(port=promoted, socket_timeout=1) as client:
        on_promoted = client.exists(f"{counter_base('drill', [('fresh', fresh)])}:3600w")
    denied_metric = metric(
        service.http_port, "ratelimit_decisions_total", descriptor="load", result="failure_mode_denied"
    )
    rss = {"ratelimit": round(peak_rss_mib(service.proc), 1)}

    assert service.alive(), service.proc.log_tail()
    assert before[ADMITTED] == sum(before.values()) > 0, before  # healthy cluster: the store decides
    assert set(tally) <= {ADMITTED, FAILURE_MODE}, tally  # no gRPC error, nothing but the failure mode
    assert moved_failed > 0, "the victim's keys never failed: was it really killed mid-load?"
    assert denied_metric == tally[FAILURE_MODE]  # the service counted each failure-mode answer
    assert slowest < LATENCY_LIMIT_S, f"a call took {slowest:.2f} s"
    assert watch.failed_at is not None and watch.promoted_at is not None
    assert fresh_tally == Counter({ADMITTED: FRESH_LIMIT, DENIED: FRESH_CALLS - FRESH_LIMIT}), fresh_tally
    assert on_promoted == 1, "the fresh key was not counted on the promoted replica"
    drill_log.record(
        Row(
            f"fault: Redis Cluster master SIGKILLed under load (3 masters + 3 replicas, "
            f"cluster-node-timeout {NODE_TIMEOUT_MS} ms, {CLIENTS} gRPC clients, {len(keys)} keys)",
            "failure mode (deny: store unavailable) while failing over, no gRPC error or hang; the "
            "store decides again after the promotion, also on moved slots; a fresh key admits its limit",
            f"victim flagged FAIL {watch.failed_at:.2f} s after the kill, replica promoted at "
            f"{watch.promoted_at:.2f} s, every key decided by the store again from {resumed:.2f} s; "
            f"{tally[FAILURE_MODE]} failure-mode answers of {len(samples)} ({moved_failed} on the "
            f"victim's {len(moved)} keys); slowest call {slowest * 1000:.0f} ms, {late} over Envoy's "
            f"{ENVOY_TIMEOUT_S} s; fresh key on the promoted replica: {fresh_tally[ADMITTED]}/{FRESH_LIMIT} "
            f"admitted of {FRESH_CALLS}",
            "tests/drills/test_redis_cluster_drill.py",
            sent=len(samples),
            failed=tally[FAILURE_MODE],
            over_admitted=max(0, fresh_tally[ADMITTED] - FRESH_LIMIT),
            peak_rss_mib=rss,
        )
    )

"""Timing: rejecting an unknown key must not depend on how much of it matches a real key.

The store looks keys up by SHA-256, so a key sharing 40 characters with the dev key and a key sharing
none must take the same time. We send them alternately (so drift and load hit both alike) straight
to the authz gRPC service and compare medians. Tolerance: the medians may differ by at most
max(50 µs, 3 × the standard error of the difference estimated from the samples' spread (MAD)),
which a char-by-char comparison against a stored plaintext would still be far below on one key, so
we also check the two are within the noise of two *unrelated* unknown keys (a control pair).
"""

from __future__ import annotations

import statistics
import time

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz_service import keys
from tests.conftest import Gateway
from tests.drills.conftest import DrillLog, Row

SAMPLES = 600


def request_for(key: str) -> CheckRequest:
    request = CheckRequest()
    request.attributes.request.http.path = "/v1/embed"
    request.attributes.request.http.headers["authorization"] = f"Bearer {key}"
    return request


def robust_sem(samples: list[float]) -> float:
    """Standard error of the median from the median absolute deviation (robust to GC spikes)."""
    median = statistics.median(samples)
    mad = statistics.median(abs(s - median) for s in samples) * 1.4826
    return 1.2533 * mad / len(samples) ** 0.5


def test_unknown_key_time_does_not_depend_on_a_shared_prefix(
    authz_port: int, gateway: Gateway, drill_log: DrillLog
) -> None:
    real = gateway.dev_key
    near = real[:-3] + ("AAA" if real[-3:] != "AAA" else "BBB")  # same prefix, 40 secret chars shared
    far = keys.generate_key("sk_test")  # same shape, nothing shared
    malformed = "sk_nope_" + "x" * 12
    kinds = {"near": near, "far": far, "control": keys.generate_key("sk_test"), "malformed": malformed}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    with grpc.insecure_channel(f"127.0.0.1:{authz_port}") as channel:
        check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
        requests = {kind: request_for(key) for kind, key in kinds.items()}
        for _ in range(30):  # warm up: connection, caches of the negative answers
            for request in requests.values():
                check(request, timeout=2)
        for _ in range(SAMPLES):
            for kind, request in requests.items():
                started = time.perf_counter()
                reply = check(request, timeout=2)
                times[kind].append(time.perf_counter() - started)
                assert reply.denied_response.status.code == 401
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    noise = max(50e-6, 3 * (robust_sem(times["near"]) ** 2 + robust_sem(times["far"]) ** 2) ** 0.5)
    gap = abs(medians["near"] - medians["far"])
    control_gap = abs(medians["far"] - medians["control"])
    assert gap <= noise, (
        f"near {medians['near'] * 1e6:.0f} µs vs far {medians['far'] * 1e6:.0f} µs, "
        f"noise {noise * 1e6:.0f} µs"
    )
    assert control_gap <= noise
    figures = ", ".join(f"{kind} {m * 1e6:.0f} µs" for kind, m in medians.items())
    drill_log.record(
        Row(
            "timing: unknown key with a shared prefix vs not",
            "medians within noise (hash lookup)",
            f"medians of {SAMPLES} alternating Checks: {figures}; "
            f"|near-far| {gap * 1e6:.0f} µs ≤ {noise * 1e6:.0f} µs",
            "tests/drills/test_auth_timing.py",
            sent=SAMPLES * len(kinds),
        )
    )

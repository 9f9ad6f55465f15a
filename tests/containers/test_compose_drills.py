"""Fault drills across containers: what `docker kill`, a cut network or a stopped container does.

Each drill records its figures (Stack.record): they are printed at the end of the run and are
the compose rows of the README's "What we survive" table. Every drill leaves the stack as it
found it (replicas restarted, networks reconnected) for the next one.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx

from authz_service import keys
from tests.authz_fixtures import assert_error, bearer
from tests.containers.conftest import SCALE, Stack
from tests.drills.load import Load
from tests.drills.wire import is_error_shape

EMBED = "/v1/embed"
ROOMY = {"rate_limit_per_minute": 100_000, "rate_limit_per_hour": 1_000_000}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check` until true; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def embeds(stack: Stack, key: str) -> bool:
    try:
        with stack.client(timeout=5) as http:
            return http.post(EMBED, json={"input_text": "probe"}, headers=bearer(key)).status_code == 200
    except httpx.TransportError:
        return False


def statuses(stack: Stack, key: str, n: int) -> Counter:
    with stack.client() as http:
        return Counter(http.post(EMBED, json={"input_text": f"n{i}"}, headers=bearer(key)).status_code
                       for i in range(n))  # fmt: skip


def test_three_ratelimit_replicas_admit_exactly_the_limit(stack: Stack) -> None:
    """64 concurrent clients on one key, spread over 3 ratelimit replicas sharing one Valkey."""
    assert len(stack.containers("ratelimit")) == SCALE["ratelimit"]
    limit, clients, each = 50, 64, 4
    key = stack.new_key(rate_limit_per_minute=100_000, rate_limit_per_hour=limit)
    results: Counter = Counter()
    lock, start = threading.Lock(), threading.Barrier(clients)

    def client() -> None:
        with stack.client(timeout=30) as http:
            start.wait()
            for i in range(each):
                response = http.post(EMBED, json={"input_text": f"burst {i}"}, headers=bearer(key))
                with lock:
                    results[response.status_code] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    served = {
        line.split("::")[1]: int(line.rsplit("::", 1)[1])
        for line in stack.envoy_admin("/clusters").splitlines()
        if line.startswith("ratelimit::") and "::rq_total::" in line
    }
    stack.record(
        "3 ratelimit replicas, 64 clients, one key (limit 50/h)",
        "exactly the limit admitted",
        f"{results[200]} admitted, {results[429]} × 429 of {clients * each}; "
        f"calls per replica {sorted(served.values())}",
    )
    assert results[200] == limit and results[429] == clients * each - limit, results
    assert sum(1 for n in served.values() if n > 0) >= 2, f"one replica took every call: {served}"


def test_killing_one_of_two_authz_replicas_under_load(stack: Stack) -> None:
    key = stack.new_key(**ROOMY)
    first, second = stack.containers("authz")
    load = Load(stack.url, [(f"client{i}", key) for i in range(4)]).start(warm_up=2)
    stack.docker("kill", first)
    time.sleep(6)
    load.stop()
    sent, failed = load.total("sent"), load.outside({200})
    stack.record(
        "docker kill one of two authz replicas, 4 clients",
        "0 failed beyond the 4 in flight",
        f"{failed} failed of {sent}",
    )
    assert load.total(200) > 20, load.summary()
    assert failed <= 4, load.summary()
    assert load.total("bad_shape") == 0, load.summary()

    # The last replica gone too: fail closed, JSON 503, never a 200.
    stack.docker("kill", second)
    try:
        with stack.client() as http:
            answers = [
                http.post(EMBED, json={"input_text": "no authz"}, headers=bearer(key)) for _ in range(20)
            ]
        codes = Counter(r.status_code for r in answers)
        stack.record("every authz replica killed", "JSON 503, never 200", f"{dict(codes)} of 20")
        assert codes == {503: 20}, codes
        for response in answers:
            assert_error(response, 503, "SERVICE_UNAVAILABLE")
    finally:
        stack.docker("start", first, second)
        stack.wait_healthy("authz", 2)
    took = wait_for(lambda: embeds(stack, key), 60, "gateway answers again after authz restart")
    stack.record("authz replicas started again", "gateway answers again", f"first 200 after {took:.1f} s")


def test_postgres_restart_keeps_cached_keys_and_refuses_unknown_ones(stack: Stack) -> None:
    key = stack.new_key(**ROOMY)
    # Used enough times that every authz replica has looked it up (and cached it).
    assert statuses(stack, key, 8) == {200: 8}
    postgres = stack.containers("postgres")[0]
    stack.docker("stop", postgres)
    try:
        cached = statuses(stack, key, 10)
        unknown = []
        with stack.client() as http:
            for _ in range(10):
                stranger = keys.generate_key("sk_live")  # well-formed, never registered
                unknown.append(http.post(EMBED, json={"input_text": "who"}, headers=bearer(stranger)))
        codes = Counter(r.status_code for r in unknown)
        stack.record(
            "Postgres stopped",
            "cached keys keep working; unknown keys JSON 503, never 200",
            f"cached key {dict(cached)}; unknown keys {dict(codes)}",
        )
        assert cached == {200: 10}, cached
        assert codes == {503: 10}, codes
        assert all(is_error_shape(r.status_code, r.content) for r in unknown)
    finally:
        stack.docker("start", postgres)
        stack.wait_healthy("postgres", 1)
    # Back: new keys can be made and used, unknown keys are 401 again.
    fresh = stack.new_key()
    assert embeds(stack, fresh)
    with stack.client() as http:
        response = http.post(EMBED, json={"input_text": "x"}, headers=bearer(keys.generate_key("sk_live")))
    assert_error(response, 401, "AUTHENTICATION_ERROR")


def test_redis_cut_off_the_network_fails_open_then_limits_resume(stack: Stack) -> None:
    limited = stack.new_key(rate_limit_per_minute=100_000, rate_limit_per_hour=5)
    assert statuses(stack, limited, 6) == {200: 5, 429: 1}
    redis = stack.containers("redis")[0]
    stack.docker("network", "disconnect", stack.network(), redis)
    cut_at = time.monotonic()
    try:
        load = Load(stack.url, [(f"client{i}", limited) for i in range(4)]).start(warm_up=0)
        time.sleep(5)
        load.stop()
    finally:
        stack.docker("network", "connect", "--alias", "redis", stack.network(), redis)
    cut_for = time.monotonic() - cut_at
    resumed = wait_for(lambda: statuses(stack, limited, 1) == {429: 1}, 60, "limits enforced again")
    summary = load.summary()
    server_errors = sum(n for tally in summary.values() for status, n in tally.items()
                        if isinstance(status, int) and status >= 500)  # fmt: skip
    stack.record(
        "Redis disconnected from the network for 5 s, 4 clients on a spent key",
        "configured failure mode (fail open), no 5xx; limits back within seconds of reconnecting",
        f"{load.total(200)} × 200 (fail open), {load.total(429)} × 429, {server_errors} × 5xx of "
        f"{load.total('sent')} in {cut_for:.1f} s; 429 again {resumed:.1f} s after reconnecting",
    )
    assert server_errors == 0 and load.total("transport") == 0, summary
    assert load.total(200) > 0, f"no request passed while Redis was away: {summary}"
    assert resumed < 30


def slow_body(texts: int = 16) -> dict:
    """/v1/embeddings with long inputs: about a second of CPU Triton per request here."""
    return {"model": "embedder", "input": ["the quick brown fox jumps over the lazy dog " * 30] * texts}


def test_stopping_envoy_drains_requests_in_flight(stack: Stack) -> None:
    key = stack.new_key(**ROOMY)
    in_flight = 4
    results: list[int | str] = []
    lock = threading.Lock()

    def slow_request() -> None:
        try:
            with stack.client(timeout=60) as http:
                response = http.post("/v1/embeddings", json=slow_body(), headers=bearer(key))
            outcome: int | str = response.status_code
        except httpx.TransportError as error:
            outcome = type(error).__name__
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=slow_request) for _ in range(in_flight)]
    for thread in threads:
        thread.start()

    def active() -> int:
        text = stack.envoy_admin("/stats?filter=^http\\.public\\.downstream_rq_active$")
        return int(text.split(":")[1]) if ":" in text else 0

    wait_for(lambda: active() >= in_flight, 15, "slow requests in flight at Envoy")
    envoy = stack.containers("envoy")[0]
    stopping = time.monotonic()
    stack.docker("stop", envoy, timeout=90)
    stop_took = time.monotonic() - stopping
    for thread in threads:
        thread.join(60)
    try:
        stack.record(
            f"docker stop envoy, {in_flight} slow requests in flight",
            "they complete (the launcher drains before Envoy stops)",
            f"{Counter(results)}; container stopped after {stop_took:.1f} s",
        )
        assert results == [200] * in_flight, results
        exit_code = stack.docker("inspect", "-f", "{{.State.ExitCode}}", envoy).strip()
        assert exit_code == "0", f"envoy exited {exit_code}"
    finally:
        stack.docker("start", envoy)
        stack.compose.wait_ready(90)

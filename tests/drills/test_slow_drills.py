"""Drill 12: slow clients (slowloris, silent connections, trickled bodies) and a very slow upstream.

A real Envoy rendered from the project template with short timeouts (defaults: headers 10 s, whole
request 30 s, idle connection 75 s, inference route 30 s), a small connection cap (default 10,000)
and circuit breaker, in front of real authz and ratelimit sidecars (loose limits) and a tiny asyncio
upstream that answers at once or hangs on demand. Expected: every slow client is cut when its
timeout fires (JSON 408 or a close) or refused over the cap, keyed requests keep flowing meanwhile,
a hanging upstream costs a JSON 504 after the route timeout with no retry, the excess gets fast
JSON 503s, and nothing piles up in Envoy.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.drills.conftest import DrillLog, Row
from tests.drills.replicas import peak_rss_mib
from tests.drills.slow_upstream import SlowUpstream
from tests.drills.wire import is_error_shape, parse_responses
from tests.envoy_fixtures import EnvoyUnderTest, spawn_envoy

HEADERS_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_S = 2.0
IDLE_TIMEOUT_S = 2.0
UPSTREAM_TIMEOUT_S = 2.0
MAX_REQUESTS = MAX_PENDING = 10  # inference circuit breaker: in flight, queued
SLACK_S = 1.5  # scheduling on a shared 2-core machine
SLOW_CLIENTS, SILENT_CLIENTS, ATTACK_S, TRICKLE_S = 200, 50, 4.0, 0.2
MAX_CONNECTIONS = 220  # below the attack's 250 + 1 keyed client: the cap is reached
SLOW_BODIES, BODY_BYTE_S = 20, 0.5
HANGING = 50
UPSTREAM_HANG_S = 30.0
RSS_LIMIT_MIB = 512  # Envoy peaks near 75 MiB here; connections piling up would climb past this
ACTIVE = "http.public.downstream_cx_active"
FILE = "tests/drills/test_slow_drills.py"


@pytest.fixture(scope="module")
def upstream() -> Iterator[SlowUpstream]:
    server = SlowUpstream(UPSTREAM_HANG_S)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow_gateway(
    run_dir: Path, loose_authz_port: int, loose_ratelimit_port: int, upstream: SlowUpstream
) -> Iterator[EnvoyUnderTest]:
    overrides = {
        "authz_port": str(loose_authz_port), "ratelimit_port": str(loose_ratelimit_port),
        "adapter_port": str(upstream.port),
        "request_headers_timeout": f"{HEADERS_TIMEOUT_S}s", "request_timeout": f"{REQUEST_TIMEOUT_S}s",
        "downstream_idle_timeout": f"{IDLE_TIMEOUT_S}s", "inference_timeout": f"{UPSTREAM_TIMEOUT_S}s",
        "inference_max_requests": str(MAX_REQUESTS), "inference_max_pending": str(MAX_PENDING),
        "max_downstream_connections": str(MAX_CONNECTIONS),
    }  # fmt: skip
    envoy = spawn_envoy(run_dir, "slow-drills-envoy", overrides)
    yield envoy
    envoy.proc.stop()


def rss(envoy: EnvoyUnderTest) -> dict[str, float]:
    return {"envoy": round(peak_rss_mib(envoy.proc), 1)}


def embed(http: httpx.Client, key: str) -> tuple[int, float]:
    """(status, seconds) of one keyed request; status -1: an error without the JSON body."""
    started = time.monotonic()
    response = http.post("/v1/embed", json={"input_text": "x"}, headers={"Authorization": f"Bearer {key}"})
    shape_ok = is_error_shape(response.status_code, response.content)
    return (response.status_code if shape_ok else -1), time.monotonic() - started


@dataclass
class KeyedLoad:
    """One client sending keyed requests back to back on its own thread."""

    url: str
    key: str
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self.stop.is_set():
                try:
                    status, seconds = embed(http, self.key)
                except httpx.HTTPError as error:  # e.g. a new connection refused over the cap
                    status, seconds = type(error).__name__, 0.0
                self.statuses[status] += 1
                self.latencies.append(seconds)


@dataclass
class Cut:
    """How Envoy ended one slow connection: after how long, and what it sent first."""

    kind: str
    seconds: float
    data: bytes


async def read_for(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """Bytes that arrived within `seconds` (b"" at EOF), or None if nothing did."""
    try:
        return await asyncio.wait_for(reader.read(65536), seconds)
    except TimeoutError:
        return None
    except ConnectionError:
        return b""


async def slow_connection(port: int, kind: str, opening: bytes, trickle: bytes, every: float) -> Cut:
    """Send `opening`, then `trickle` one byte per `every` (forever), until Envoy answers or closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started, data, pending = time.monotonic(), b"", itertools.cycle(trickle)
    try:
        writer.write(opening)
        while time.monotonic() - started < 30:
            chunk = await read_for(reader, every)
            if chunk == b"" or (chunk and b"\r\n\r\n" in data + chunk):  # closed, or a whole head
                return Cut(kind, time.monotonic() - started, data + chunk)
            data += chunk or b""
            if trickle:
                writer.write(bytes([next(pending)]))
        return Cut(kind, time.monotonic() - started, data)
    except ConnectionError:
        return Cut(kind, time.monotonic() - started, data)
    finally:
        writer.close()


async def keep_attacking(port: int, kind: str, opening: bytes, trickle: bytes, cuts: list[Cut]) -> None:
    """Reconnect soon after Envoy cuts us, for ATTACK_S: the attack stays at full strength."""
    deadline = time.monotonic() + ATTACK_S
    while time.monotonic() < deadline:
        cuts.append(await slow_connection(port, kind, opening, trickle, TRICKLE_S))
        await asyncio.sleep(TRICKLE_S)  # no busy loop on connections refused over the cap


def slowloris(port: int) -> list[Cut]:
    cuts: list[Cut] = []
    partial = b"POST /v1/embed HTTP/1.1\r\nHost: gateway\r\nX-Slow: "

    async def attack() -> None:
        trickling = [keep_attacking(port, "partial", partial, b"a", cuts) for _ in range(SLOW_CLIENTS)]
        silent = [keep_attacking(port, "silent", b"", b"", cuts) for _ in range(SILENT_CLIENTS)]
        await asyncio.gather(*trickling, *silent)

    asyncio.run(attack())
    return cuts


def is_408_json(data: bytes) -> bool:
    responses = parse_responses(data)
    return len(responses) == 1 and responses[0].status == 408 and is_error_shape(408, responses[0].body)


def cut_as_expected(cut: Cut) -> bool:
    """Partial headers: a JSON 408 (or a close) once the headers timeout fires; silent: a close
    (nothing to answer) once the idle timeout fires."""
    if cut.kind == "partial":
        return cut.seconds <= HEADERS_TIMEOUT_S + SLACK_S and (cut.data == b"" or is_408_json(cut.data))
    return cut.seconds <= IDLE_TIMEOUT_S + SLACK_S and cut.data == b""


def wait_for_connections_to_drain(envoy: EnvoyUnderTest, limit: float = 5) -> int:
    deadline = time.monotonic() + limit
    while (active := envoy.stat(ACTIVE)) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return active


def counters(envoy: EnvoyUnderTest, names: list[str]) -> dict[str, int]:
    return {name: envoy.stat(name) for name in names}


@pytest.mark.slow
def test_slowloris_and_silent_connections_are_cut_while_keyed_requests_flow(
    slow_gateway: EnvoyUnderTest, key: str, drill_log: DrillLog
) -> None:
    port = httpx.URL(slow_gateway.url).port
    names = ["http.public.downstream_rq_header_timeout", "http.public.downstream_cx_idle_timeout",
             f"listener.127.0.0.1_{port}.downstream_global_cx_overflow"]  # fmt: skip
    before = counters(slow_gateway, names)
    load = KeyedLoad(slow_gateway.url, key)
    client = threading.Thread(target=load.run)
    client.start()
    time.sleep(0.5)  # its keep-alive connection is open before the attack fills the cap
    cuts = slowloris(port)
    load.stop.set()
    client.join(15)
    active_after = wait_for_connections_to_drain(slow_gateway)
    header_timeouts, idle_timeouts, refused = (
        v - before[k] for k, v in counters(slow_gateway, names).items()
    )
    by_kind = Counter(cut.kind for cut in cuts)
    bad_cuts = [cut for cut in cuts if not cut_as_expected(cut)]
    answered_408 = sum(is_408_json(cut.data) for cut in cuts)
    longest = {kind: max(c.seconds for c in cuts if c.kind == kind) for kind in by_kind}
    keyed_sent = sum(load.statuses.values())
    keyed_failed = keyed_sent - load.statuses[200]
    p50, worst = statistics.median(load.latencies), max(load.latencies)
    memory = rss(slow_gateway)
    assert by_kind["partial"] >= SLOW_CLIENTS and by_kind["silent"] >= SILENT_CLIENTS, by_kind
    assert not bad_cuts, bad_cuts[:5]
    # Every connection ended by one of the three guards, and the cap was really reached.
    assert header_timeouts >= answered_408 > 0 and refused > 0, (header_timeouts, answered_408, refused)
    assert header_timeouts + idle_timeouts + refused >= len(cuts), (header_timeouts, idle_timeouts, refused)
    # The attack generator shares 2 cores with the sidecars: a rare sidecar call may fail (JSON 503,
    # fail closed), but keyed requests are neither refused nor stalled by the slow clients.
    assert set(load.statuses) <= {200, 503} and keyed_failed <= keyed_sent // 100, load.statuses
    assert keyed_sent >= 10, load.statuses
    assert worst < 2.0, f"keyed requests stalled during the attack: max {worst:.2f} s"
    assert active_after == 0, f"{active_after} downstream connections still open after the attack"
    assert memory["envoy"] < RSS_LIMIT_MIB, memory
    drill_log.record(
        Row(
            f"slow clients: {SLOW_CLIENTS} slowloris (partial headers, a byte per {TRICKLE_S:.1f} s) + "
            f"{SILENT_CLIENTS} silent connections, reconnecting for {ATTACK_S:.0f} s; cap "
            f"{MAX_CONNECTIONS} connections",
            "each cut when its timeout fires (JSON 408 / close) or refused over the cap; keyed requests "
            "unaffected; no pile-up",
            f"{len(cuts)} attack connections: {header_timeouts} cut by the headers timeout "
            f"({HEADERS_TIMEOUT_S:.0f} s, {answered_408} saw the JSON 408; ≤ {longest['partial']:.2f} s), "
            f"{idle_timeouts} silent ones closed by the idle timeout ({IDLE_TIMEOUT_S:.0f} s; "
            f"≤ {longest['silent']:.2f} s), {refused} refused at accept over the cap; {keyed_sent} keyed "
            f"requests meanwhile, {load.statuses[200]} × 200 (p50 {p50 * 1000:.0f} ms, max "
            f"{worst * 1000:.0f} ms), {keyed_failed} failed; 0 "
            "connections left open after (idle timeout and cap are new: Envoy's defaults were 1 h, none)",
            FILE,
            sent=len(cuts) + keyed_sent,
            failed=len(bad_cuts) + keyed_failed,
            peak_rss_mib=memory,
        )
    )


def slow_bodies(port: int, key: str) -> list[Cut]:
    opening = (
        "POST /v1/embed HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()

    async def all_of_them() -> list[Cut]:
        body = b'{"input_text": "' + b"a" * 1000
        return await asyncio.gather(
            *(slow_connection(port, "body", opening, body, BODY_BYTE_S) for _ in range(SLOW_BODIES))
        )

    return asyncio.run(all_of_them())


def test_trickled_body_gets_json_408_and_never_reaches_the_upstream(
    slow_gateway: EnvoyUnderTest, upstream: SlowUpstream, key: str, drill_log: DrillLog
) -> None:
    arrived, timeouts = upstream.arrived, slow_gateway.stat("http.public.downstream_rq_timeout")
    cuts = slow_bodies(httpx.URL(slow_gateway.url).port, key)
    fired = slow_gateway.stat("http.public.downstream_rq_timeout") - timeouts
    late_or_wrong = [
        c for c in cuts if not (is_408_json(c.data) and c.seconds <= REQUEST_TIMEOUT_S + SLACK_S)
    ]
    with httpx.Client(base_url=slow_gateway.url, timeout=10) as http:
        after, _ = embed(http, key)
    assert not late_or_wrong, ([round(c.seconds, 2) for c in cuts], late_or_wrong[:3])
    assert fired == SLOW_BODIES and upstream.arrived == arrived + (after == 200), (fired, upstream.arrived)
    assert after == 200
    drill_log.record(
        Row(
            f"slow clients: {SLOW_BODIES} keyed requests whose 1,000-byte body trickles a byte per "
            f"{BODY_BYTE_S:.1f} s",
            "JSON 408 when the whole-request timeout fires; the upstream never sees them",
            f"{SLOW_BODIES}/{SLOW_BODIES} JSON 408 after ≤ {max(c.seconds for c in cuts):.2f} s "
            f"(request_timeout {REQUEST_TIMEOUT_S:.0f} s, new: the template had none, so a trickled "
            "body held its stream for ever; default 30 s); 0 reached the upstream; next request 200",
            FILE,
            sent=SLOW_BODIES + 1,
            failed=len(late_or_wrong) + (after != 200),
            peak_rss_mib=rss(slow_gateway),
        )
    )


async def hanging_wave(url: str, key: str) -> list[tuple[int, float, str]]:
    """HANGING keyed requests at once against the hanging upstream: (status, seconds, body) each."""
    limits = httpx.Limits(max_connections=HANGING, max_keepalive_connections=HANGING)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=UPSTREAM_HANG_S) as http:

        async def one() -> tuple[int, float, str]:
            started = time.monotonic()
            response = await http.post(
                "/v1/embed", json={"input_text": "x"}, headers={"Authorization": f"Bearer {key}"}
            )
            shape_ok = is_error_shape(response.status_code, response.content)
            elapsed = time.monotonic() - started
            return (response.status_code if shape_ok else -1), elapsed, response.text[:300]

        return await asyncio.gather(*(one() for _ in range(HANGING)))


def test_hanging_upstream_gets_504_no_retry_fast_503_overflow_then_recovers(
    slow_gateway: EnvoyUnderTest, upstream: SlowUpstream, key: str, drill_log: DrillLog
) -> None:
    names = [f"cluster.inference_adapter.{name}" for name in ("upstream_rq_retry",
             "upstream_rq_pending_overflow", "outlier_detection.ejections_enforced_total")]  # fmt: skip
    before, arrived = counters(slow_gateway, names), upstream.arrived
    upstream.slow = True
    try:
        results = asyncio.run(hanging_wave(slow_gateway.url, key))
        reached = upstream.arrived - arrived
        retries, overflow, ejections = (v - before[k] for k, v in counters(slow_gateway, names).items())
        with httpx.Client(base_url=slow_gateway.url, timeout=UPSTREAM_HANG_S) as http:
            still_hanging, still_seconds = embed(http, key)
    finally:
        upstream.slow = False
    recovered_at, polls = time.monotonic(), 1
    with httpx.Client(base_url=slow_gateway.url, timeout=10) as http:
        while (status := embed(http, key)[0]) != 200:
            assert status == 503 and time.monotonic() - recovered_at < 20, status
            polls += 1
            time.sleep(0.1)
    recovery = time.monotonic() - recovered_at
    statuses = Counter(status for status, _, _ in results)
    timed_out = [s for status, s, _ in results if status == 504]
    shed = [s for status, s, _ in results if status == 503]
    bodies = Counter(body for status, _, body in results if status == 503)
    # Every shed request was refused by the circuit breaker (Envoy's detail says so per response).
    # Not `upstream_rq_pending_overflow == len(shed)`: in two full CI runs only 11 of 39 (and 12 of
    # 30) such responses were counted there, though all of them carry the {overflow} detail.
    overflowed = [body for status, _, body in results if status == 503 and "{overflow}" in body]
    admitted = MAX_REQUESTS + MAX_PENDING
    assert set(statuses) <= {503, 504}, statuses  # -1: an error without the JSON body
    assert 0 < len(timed_out) <= admitted and len(shed) >= HANGING - admitted, statuses
    assert all(UPSTREAM_TIMEOUT_S * 0.9 <= s <= UPSTREAM_TIMEOUT_S + SLACK_S for s in timed_out), timed_out
    assert statistics.median(shed) < 1.0 and len(overflowed) == len(shed) and overflow > 0, (
        shed,
        overflow,
        bodies,
    )
    # No retry storm: each admitted request reached the hanging upstream at most once.
    assert retries == 0 and reached <= len(timed_out), (retries, reached)
    # Two timeouts in a row eject the only host (outlier detection, local-origin failures) until
    # its next passing health check: meanwhile requests are refused at once instead of hanging.
    # (Rarely that check passes before the next request is sent: then it waits for its 504.)
    assert ejections >= 1, ejections
    assert (still_hanging == 503 and still_seconds < 1.0) or still_hanging == 504, (
        still_hanging,
        still_seconds,
    )
    memory = rss(slow_gateway)
    assert memory["envoy"] < RSS_LIMIT_MIB, memory
    drill_log.record(
        Row(
            f"slow upstream: {HANGING} concurrent keyed requests to an upstream that hangs "
            f"{UPSTREAM_HANG_S:.0f} s (route timeout {UPSTREAM_TIMEOUT_S:.0f} s, breaker "
            f"{MAX_REQUESTS} in flight + {MAX_PENDING} queued)",
            "JSON 504 after the route timeout, no retry, fast JSON 503 for the excess; recovers",
            f"{len(timed_out)} × JSON 504 after {min(timed_out):.2f}–{max(timed_out):.2f} s, "
            f"{len(shed)} × JSON 503 overflow (median {statistics.median(shed) * 1000:.0f} ms); "
            f"{reached} reached the upstream, {retries} retries; the host was then ejected (2 timeouts "
            f"in a row) until its next passing health check: next request JSON {still_hanging} in "
            f"{still_seconds * 1000:.0f} ms; first 200 {recovery:.2f} s after the upstream recovered",
            FILE,
            sent=HANGING + 1 + polls,
            failed=sum(v for k, v in statuses.items() if k not in (503, 504)),
            peak_rss_mib=memory,
        )
    )

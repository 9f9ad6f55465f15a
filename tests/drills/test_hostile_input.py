"""Hostile input through the session Envoy: no 5xx, JSON errors only, no auth bypass, no admin leak."""

from __future__ import annotations

import json
import select
import socket
import time

import httpx
import pytest

from tests.conftest import Gateway
from tests.drills.conftest import DrillLog, Row
from tests.drills.hostile_cases import BODY, CASES, Case, bearer, embed
from tests.drills.wire import exchange, is_error_shape, parse_responses

# Text only Envoy's admin interface would serve: a public response holding it means admin leaked.
ADMIN_MARKERS = (b"cluster_manager.", b"server.live", b"health_flags::", b'"configs"')


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request(case: Case, gateway: Gateway, fresh_key: str, drill_log: DrillLog) -> None:
    responses = exchange(gateway.url, case.build(fresh_key), timeout=20)
    assert len(responses) >= case.responses, f"{case.name}: got {responses}"
    for response in responses[: case.responses]:
        assert response.status < 500, f"{case.name}: {response.status} {response.body[:300]!r}"
        assert not any(marker in response.body for marker in ADMIN_MARKERS), case.name
        if case.gap:
            assert response.status == case.gap[0], (
                f"{case.name}: {response.status} (gap fixed? update the case)"
            )
        else:
            assert is_error_shape(response.status, response.body), f"{case.name}: {response.body[:300]!r}"
    # Only the first response answers the hostile request (a pipelined second one is /health).
    bypass = case.keyed and not case.authenticated and responses[0].status < 300
    assert not bypass, f"{case.name}: an unauthenticated request was let through"
    status = ",".join(str(r.status) for r in responses[: case.responses])
    observed = f"HTTP {status}" + (f" (GAP: {case.gap[1]})" if case.gap else "")
    drill_log.record(
        Row(
            f"hostile: {case.name}",
            "no 5xx, JSON error, no bypass",
            observed,
            "tests/drills/test_hostile_input.py::test_hostile_request",
            sent=case.responses,
        )
    )
    assert httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200  # the gateway still serves


def test_100_mb_body_is_refused_without_waiting_for_it(
    gateway: Gateway, fresh_key: str, drill_log: DrillLog
) -> None:
    """Stream 100 MB; Envoy's 4 MiB limit must answer 413 (JSON) long before we finish sending."""
    url = httpx.URL(gateway.url)
    head = embed([bearer(fresh_key)], b"", close=True).replace(
        b"Content-Length: 0", b"Content-Length: 104857600"
    )
    sent, chunk, started = 0, b"a" * 65536, time.monotonic()
    with socket.create_connection((url.host, url.port), timeout=20) as sock:
        sock.sendall(head)
        while sent < 104_857_600 and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
        data = b""
        while time.monotonic() - started < 20:
            try:
                part = sock.recv(65536)
            except OSError:
                break
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data and parse_responses(data):
                break
    elapsed = time.monotonic() - started
    response = parse_responses(data)[0]
    assert response.status == 413 and is_error_shape(413, response.body), response
    assert sent < 20 * 1024 * 1024, f"we sent {sent} bytes before Envoy answered"
    assert elapsed < 10
    drill_log.record(
        Row(
            "hostile: 100 MB streamed body",
            "JSON 413 before the body ends",
            f"413 after {sent / 2**20:.1f} MiB sent, {elapsed:.2f} s",
            "tests/drills/test_hostile_input.py::test_100_mb_body_is_refused_without_waiting_for_it",
            sent=1,
        )
    )


def test_h2c_prior_knowledge(gateway: Gateway, fresh_key: str, drill_log: DrillLog) -> None:
    """HTTP/2 cleartext (prior knowledge) gets the same answers as HTTP/1.1."""
    with httpx.Client(http1=False, http2=True, base_url=gateway.url, timeout=20) as h2:
        anonymous = h2.post("/v1/embed", json={"input_text": "hi"})
        keyed = h2.post(
            "/v1/embed", json={"input_text": "hi"}, headers={"Authorization": f"Bearer {fresh_key}"}
        )
    assert anonymous.http_version == "HTTP/2" and keyed.http_version == "HTTP/2"
    assert anonymous.status_code == 401 and is_error_shape(401, anonymous.content)
    assert keyed.status_code == 200 and len(keyed.json()["embedding"]) == 384
    drill_log.record(
        Row(
            "hostile: HTTP/2 h2c",
            "401 without key, 200 with",
            "401 / 200 over HTTP/2",
            "tests/drills/test_hostile_input.py::test_h2c_prior_knowledge",
            sent=2,
        )
    )


@pytest.mark.parametrize(
    "spoof",
    [
        {"X-Gateway-Key-Id": "999999", "X-Gateway-Plan": "pro"},
        {"X-Forwarded-For": "203.0.113.{i}", "X-Real-IP": "203.0.113.{i}"},
        {"X-Gateway-Rate-Limit-Minute": "1000000", "X-RateLimit-Limit": "1000000"},
    ],
    ids=["key-id-and-plan", "forwarded-for", "limit-headers"],
)
def test_spoofed_headers_do_not_lift_the_limit(
    spoof: dict[str, str], gateway: Gateway, fresh_key: str, drill_log: DrillLog
) -> None:
    """The session limit is 3/minute per key: the 4th request is a 429 whatever the client claims."""
    statuses = []
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for i in range(5):
            headers = {name: value.format(i=i) for name, value in spoof.items()}
            headers["Authorization"] = f"Bearer {fresh_key}"
            statuses.append(http.post("/v1/embed", json={"input_text": "hi"}, headers=headers).status_code)
    over = sum(s == 200 for s in statuses) - 3
    assert statuses == [200, 200, 200, 429, 429], statuses
    drill_log.record(
        Row(
            f"hostile: spoofed {', '.join(spoof)}",
            "limits follow the real key (3/min)",
            f"statuses {statuses}",
            "tests/drills/test_hostile_input.py::test_spoofed_headers_do_not_lift_the_limit",
            sent=5,
            over_admitted=max(over, 0),
        )
    )


def test_cors_from_a_disallowed_origin(gateway: Gateway, fresh_key: str, drill_log: DrillLog) -> None:
    evil = "https://evil.example"
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        preflight = http.options(
            "/v1/embed",
            headers={
                "Origin": evil,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        actual = http.post(
            "/v1/embed",
            content=BODY,
            headers={
                "Origin": evil,
                "Authorization": f"Bearer {fresh_key}",
                "Content-Type": "application/json",
            },
        )
        anonymous = http.post("/v1/embed", content=BODY, headers={"Origin": evil})
    for response in (preflight, actual, anonymous):
        assert "access-control-allow-origin" not in response.headers, response.headers
        assert response.status_code < 500 and is_error_shape(response.status_code, response.content)
    assert anonymous.status_code == 401
    drill_log.record(
        Row(
            "hostile: CORS from a disallowed origin",
            "no Access-Control-Allow-Origin, no bypass",
            f"preflight {preflight.status_code}, keyed {actual.status_code}, "
            f"anonymous {anonymous.status_code}",
            "tests/drills/test_hostile_input.py::test_cors_from_a_disallowed_origin",
            sent=3,
        )
    )


def test_json_error_bodies_are_json(gateway: Gateway) -> None:
    """Sanity for the checker itself: a plain 401 passes, a non-JSON body would not."""
    response = httpx.post(f"{gateway.url}/v1/embed", json={"input_text": "x"}, timeout=10)
    assert response.status_code == 401 and is_error_shape(401, response.content)
    assert not is_error_shape(401, b"<html>denied</html>")
    assert json.loads(response.content)["code"] == "AUTHENTICATION_ERROR"

"""What the real Envoy (1.40) sends a rate-limit service for `hits_addend` and `apply_on_stream_done`.

The token limits (docs/ratelimit.md#token-limits) rest on these facts, recorded here by a fake
RateLimitService behind a minimal Envoy (ratelimit filter + router) and a tiny upstream:

- Policies in the ratelimit filter's per-route config (RateLimitPerRoute.rate_limits) send their
  `hits_addend` per descriptor: a number (0 included, as an explicit wrapper) or a `format`.
- The same `hits_addend` on the route's own `rate_limits` is ignored: no per-descriptor value.
- RateLimitRequest.hits_addend stays 0 (only the filter state envoy.ratelimit.hits_addend sets it).
- `apply_on_stream_done` policies go in a second call after the response (its answer is ignored),
  where `%RESP(...)%` reads the upstream's response header; a format that yields nothing or no
  number drops that descriptor (and a call left with none is not made). Also after a 429.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest, RateLimitResponse

from stack import envoy as envoy_launcher
from tests.procs import Proc, free_port

RATELIMIT = "envoy.filters.http.ratelimit"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute"


def policy(name: str, **extra: object) -> dict:
    """A policy whose descriptor is [(k, name), (case, <x-case header>)]."""
    actions = [
        {"generic_key": {"descriptor_key": "k", "descriptor_value": name}},
        {"request_headers": {"header_name": "x-case", "descriptor_key": "case"}},
    ]
    return {"actions": actions, **extra}


PER_ROUTE_POLICIES = [
    policy("request"),
    policy("check", hits_addend={"number": 0}),
    policy("charge", hits_addend={"format": "%RESP(x-gateway-tokens)%"}, apply_on_stream_done=True),
]


@dataclass
class Recorder(rls_pb2_grpc.RateLimitServiceServicer):
    """Records every RateLimitRequest; over the limit for the case named 'deny'."""

    calls: list[RateLimitRequest] = field(default_factory=list)

    def ShouldRateLimit(self, request: RateLimitRequest, context: object) -> RateLimitResponse:
        self.calls.append(request)
        cases = {e.value for d in request.descriptors for e in d.entries if e.key == "case"}
        over = "deny" in cases
        return RateLimitResponse(overall_code=RateLimitResponse.OVER_LIMIT if over else RateLimitResponse.OK)

    def for_case(self, case: str) -> list[RateLimitRequest]:
        return [c for c in self.calls if any(e.value == case for d in c.descriptors for e in d.entries)]


class Upstream(BaseHTTPRequestHandler):
    """Answers with the status and x-gateway-tokens the client asked for (x-status, x-tokens)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(int(self.headers.get("x-status", "200")))
        if self.headers.get("x-tokens") is not None:
            self.send_header("x-gateway-tokens", self.headers["x-tokens"])
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def bootstrap(listen: int, admin: int, upstream: int, rls: int) -> dict:
    def cluster(name: str, port: int, **extra: object) -> dict:
        endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        assignment = {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]}
        return {"name": name, "connect_timeout": "1s", **extra, "load_assignment": assignment}

    http2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}  # fmt: skip
    routes = [
        {"match": {"path": "/route-level"},
         "route": {"cluster": "up", "rate_limits": [policy("route_level", hits_addend={"number": 5})]}},
        {"match": {"prefix": "/"}, "route": {"cluster": "up"},
         "typed_per_filter_config": {RATELIMIT: {"@type": PER_ROUTE, "rate_limits": PER_ROUTE_POLICIES}}},
    ]  # fmt: skip
    manager = {
        "@type": HCM,
        "stat_prefix": "t",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [
            {"name": RATELIMIT, "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                "domain": "d", "failure_mode_deny": True,
                "rate_limit_service": {"transport_api_version": "V3",
                                       "grpc_service": {"envoy_grpc": {"cluster_name": "rls"}}}}},
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }  # fmt: skip
    listener = {
        "name": "l",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": manager}]}],
    }  # fmt: skip
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [listener],
            "clusters": [
                cluster("up", upstream),
                cluster("rls", rls, typed_extension_protocol_options=http2),
            ],
        },
    }


@dataclass
class Bench:
    url: str
    recorder: Recorder

    def post(self, case: str, path: str = "/v1/embed", **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", content=b"{}", headers={"x-case": case, **headers}, timeout=10)

    def calls(self, case: str, expected: int) -> list[RateLimitRequest]:
        """The calls for `case` once `expected` arrived (the stream-done one comes after the response),
        and a moment more to see that no other follows."""
        deadline = time.monotonic() + 5
        while len(self.recorder.for_case(case)) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        return self.recorder.for_case(case)


@pytest.fixture(scope="module")
def bench(run_dir: Path) -> Iterator[Bench]:
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(recorder, server)
    rls_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    listen, admin = free_port(), free_port()
    config = run_dir / "envoy-hits-addend.yaml"
    config.write_text(yaml.safe_dump(bootstrap(listen, admin, upstream.server_address[1], rls_port)))
    envoy_launcher.validate(config)
    proc = Proc("envoy-hits-addend", envoy_launcher.envoy_args(config, log_level="error"), run_dir)
    try:
        proc.wait_port(listen)
        yield Bench(f"http://127.0.0.1:{listen}", recorder)
    finally:
        proc.stop()
        upstream.shutdown()
        server.stop(0)


def by_name(request: RateLimitRequest) -> dict[str, object]:
    """Descriptor name (the k entry) → its hits_addend (None: not sent)."""
    found: dict[str, object] = {}
    for d in request.descriptors:
        name = next(e.value for e in d.entries if e.key == "k")
        found[name] = d.hits_addend.value if d.HasField("hits_addend") else None
    return found


def test_per_route_policies_send_hits_addend_per_descriptor_and_charge_at_stream_done(bench: Bench) -> None:
    response = bench.post("tokens", **{"x-tokens": "42"})
    assert response.status_code == 200
    before, done = bench.calls("tokens", 2)
    # Before the upstream: a number is sent per descriptor, 0 as an explicit 0; none → not sent.
    assert by_name(before) == {"request": None, "check": 0}
    assert before.hits_addend == 0  # the request-level field is left unset
    # After the response, in its own call: the format read the response header.
    assert by_name(done) == {"charge": 42}
    assert done.hits_addend == 0


def test_a_response_header_of_zero_is_an_explicit_zero(bench: Bench) -> None:
    bench.post("zero", **{"x-tokens": "0"})
    _, done = bench.calls("zero", 2)
    assert by_name(done) == {"charge": 0}


@pytest.mark.parametrize("tokens", [None, "many"])
def test_no_number_in_the_response_header_drops_the_descriptor_and_the_call(bench: Bench, tokens) -> None:
    case = f"missing-{tokens}"
    headers = {"x-tokens": tokens} if tokens is not None else {}
    assert bench.post(case, **headers).status_code == 200
    assert [by_name(c) for c in bench.calls(case, 2)] == [{"request": None, "check": 0}]


def test_an_error_response_with_the_header_is_charged_too(bench: Bench) -> None:
    # Envoy charges whatever status came back: the adapter sends the header on successes only.
    assert bench.post("error", **{"x-tokens": "9", "x-status": "500"}).status_code == 500
    assert [by_name(c) for c in bench.calls("error", 2)] == [{"request": None, "check": 0}, {"charge": 9}]


def test_a_refused_request_has_no_stream_done_charge(bench: Bench) -> None:
    assert bench.post("deny", **{"x-tokens": "42"}).status_code == 429  # never reached the upstream
    assert [by_name(c) for c in bench.calls("deny", 2)] == [{"request": None, "check": 0}]


def test_hits_addend_on_the_route_rate_limits_is_ignored(bench: Bench) -> None:
    assert bench.post("route", "/route-level").status_code == 200
    (only,) = bench.calls("route", 1)
    assert by_name(only) == {"route_level": None} and only.hits_addend == 0

"""The service as a drop-in for envoyproxy/ratelimit: its runtime layout and settings, its config
as written for it, its `limit` override and stats, over real gRPC and a real Valkey."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import grpc
import httpx
from envoy.extensions.common.ratelimit.v3.ratelimit_pb2 import RateLimitDescriptor
from envoy.service.ratelimit.v3 import rls_pb2_grpc
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest, RateLimitResponse

from tests.procs import Proc, free_port, python_module
from tests.ratelimit_fixtures import grpc_serving, is_ok, rl_request

# Two files for one domain, as a Lyft deployment with MERGE_DOMAIN_CONFIG=true has them.
FILES = {
    "files.yaml": """\
domain: edge
descriptors:
  - key: files
    value: files/*
    share_threshold: true
    rate_limit:
      unit: hour
      requests_per_unit: 2
""",
    "team/users.yaml": """\
domain: edge
descriptors:
  - key: user
    rate_limit:
      unit: Hour
      requests_per_unit: 100
""",
}


def write_runtime(root: Path, version: str, files: dict[str, str]) -> Path:
    """<root>/<version>/ratelimit/config/… with `current` pointing at it (Lyft's symlink swap)."""
    for name, text in files.items():
        path = root / version / "ratelimit" / "config" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    current = root / "current"
    swap = root / f"current-{version}"
    swap.symlink_to(root / version)
    swap.replace(current)  # atomic rename over the old link
    return current


def test_runtime_layout_merged_domain_share_threshold_override_stats_and_reload(
    tmp_path: Path, run_dir: Path, redis_url: str
) -> None:
    root = tmp_path / "runtime"
    current = write_runtime(root, "v1", FILES)
    grpc_port, http_port = free_port(), free_port()
    args = ["--grpc-port", str(grpc_port), "--http-port", str(http_port), "--redis-url", redis_url]
    env = {"RUNTIME_ROOT": str(current), "RUNTIME_SUBDIRECTORY": "ratelimit", "MERGE_DOMAIN_CONFIG": "true"}
    env["RATELIMIT_RELOAD_INTERVAL"] = "0.2"
    proc = Proc(f"ratelimit-lyft-{grpc_port}", python_module("ratelimit_service", *args), run_dir, env)
    try:
        proc.wait_until(lambda: grpc_serving(grpc_port), 30, "serving")
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = rls_pb2_grpc.RateLimitServiceStub(channel)
            run = secrets.token_hex(4)  # fresh counters in the shared Valkey
            # share_threshold: every files/* value shares one counter of 2 per hour.
            shared = [is_ok(stub.ShouldRateLimit(rl_request("edge", [("files", f"files/{run}-{n}")])))
                      for n in ("a", "b", "c")]  # fmt: skip
            assert shared == [True, True, False]
            # The second file's rule (merged into the same domain) applies; unit in any case.
            user = [("user", f"u-{run}")]
            assert is_ok(stub.ShouldRateLimit(rl_request("edge", user)))
            # Envoy's `limit` override replaces the whole limit: 1 per hour instead of 100.
            overridden = RateLimitRequest(
                domain="edge",
                descriptors=[
                    RateLimitDescriptor(
                        entries=[RateLimitDescriptor.Entry(key="user", value=f"o-{run}")],
                        limit=RateLimitDescriptor.RateLimitOverride(
                            requests_per_unit=1, unit=RateLimitResponse.RateLimit.HOUR
                        ),
                    )
                ],
            )
            assert [is_ok(stub.ShouldRateLimit(overridden)) for _ in range(2)] == [True, False]

            metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).text
            assert (
                'ratelimit_service_rate_limit_over_limit_total{domain="edge",key="files_files/*"} 1.0'
                in metrics
            )
            assert 'ratelimit_service_rate_limit_total_hits_total{domain="edge",key="user"}' in metrics
            assert 'ratelimit_service_rate_limit_over_limit_total{domain="edge",key="user_o-' in metrics

            # Swap the runtime root to a new version: the new limit applies without a restart.
            write_runtime(
                root, "v2", {**FILES, "team/users.yaml": FILES["team/users.yaml"].replace("100", "1")}
            )
            fresh = [("user", f"v2-{run}")]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                first = is_ok(stub.ShouldRateLimit(rl_request("edge", fresh)))
                if first and not is_ok(stub.ShouldRateLimit(rl_request("edge", fresh))):
                    break  # 1 per hour: the reloaded limit
                fresh = [("user", f"v2-{run}-{time.monotonic_ns()}")]
                time.sleep(0.2)
            else:
                raise AssertionError(f"the swapped runtime root was not reloaded:\n{proc.log_tail()}")
    finally:
        proc.stop()

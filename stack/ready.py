"""`python -m stack.ready`: wait until every part of the local stack answers, then print the key.

Runs as one more process under honcho and then stays idle (honcho stops everything when
any process exits, so this one must not).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from common.probes import grpc_serving, http_ok, tcp_open
from stack.ports import port

PROGRESS_EVERY_S = 5.0
SLOW_START_WARNING_S = 300.0


def usage_check() -> dict[str, Callable[[], bool]]:
    """The usage writer, when make run starts it (GATEWAY_USAGE_LOG not off)."""
    if not os.environ.get("GATEWAY_USAGE_LOG"):
        return {}
    return {"usage": lambda: http_ok(f"http://127.0.0.1:{port('USAGE_HTTP_PORT')}/health")}


def checks() -> dict[str, Callable[[], bool]]:
    found: dict[str, Callable[[], bool]] = {}
    if os.environ.get("EMBEDDED_REDIS") == "1":
        found["redis"] = lambda: tcp_open("127.0.0.1", port("EMBEDDED_REDIS_PORT"))
    if os.environ.get("EMBEDDED_POSTGRES") == "1":
        found["postgres"] = lambda: tcp_open("127.0.0.1", port("EMBEDDED_POSTGRES_PORT"))
    inference_url = os.environ.get("INFERENCE_URL", "").rstrip("/")
    if inference_url:  # --inference-url: an adapter we did not start
        found["inference adapter"] = lambda: http_ok(f"{inference_url}/ready")
    else:
        found["triton (loading the model)"] = lambda: http_ok(
            f"http://127.0.0.1:{port('TRITON_HTTP_PORT')}/v2/health/ready"
        )
        found["adapter"] = lambda: http_ok(f"http://127.0.0.1:{port('ADAPTER_PORT')}/ready")
    found |= {
        "authz": lambda: grpc_serving(f"127.0.0.1:{port('AUTHZ_GRPC_PORT')}"),
        "authz http": lambda: http_ok(f"http://127.0.0.1:{port('AUTHZ_HTTP_PORT')}/health"),
        "ratelimit": lambda: grpc_serving(f"127.0.0.1:{port('RATELIMIT_GRPC_PORT')}"),
        "ratelimit http": lambda: http_ok(f"http://127.0.0.1:{port('RATELIMIT_HTTP_PORT')}/health"),
        **usage_check(),
        # Through the admin port: the public one may speak HTTPS (--tls-cert).
        "envoy": lambda: http_ok(f"http://127.0.0.1:{port('ENVOY_ADMIN_PORT')}/ready"),
    }
    return found


def gateway_url() -> str:
    """How a client on this machine reaches the gateway (scheme, host and port as configured)."""
    scheme = "https" if os.environ.get("GATEWAY_TLS_CERT") else "http"
    host = os.environ.get("GATEWAY_HOST", "127.0.0.1")
    host = "localhost" if host in ("127.0.0.1", "0.0.0.0", "") else host
    return f"{scheme}://{host}:{port('GATEWAY_PORT')}"


def banner(elapsed: float) -> str:
    gateway = gateway_url()
    key = os.environ.get("TEST_API_KEY", "<see the authz log line 'Dev API key'>")
    admin = os.environ.get("AUTHZ_ADMIN_TOKEN", "<AUTHZ_ADMIN_TOKEN>")
    return "\n".join([
        "",
        f"Gateway ready on {gateway} (all parts up in {elapsed:.0f} s)",
        f"Dev API key: {key}",
        "Try:",
        f"  curl -H \"Authorization: Bearer {key}\" -d '{{\"input_text\":\"Hello, world!\"}}' "
        f"{gateway}/v1/embed",
        f"  curl -H \"Authorization: Bearer {key}\" {gateway}/v1/usage",
        f"  curl -H \"X-Admin-Token: {admin}\" -d '{{\"name\":\"My App\",\"rate_limit_per_minute\":70}}' "
        f"{gateway}/auth/register",
        f"  curl {gateway}/health",
        "Ctrl-C stops everything.",
        "",
    ])  # fmt: skip


def wait_all() -> float:
    start = time.monotonic()
    pending = checks()
    last_report = 0.0
    warned = False
    while pending:
        pending = {name: check for name, check in pending.items() if not check()}
        elapsed = time.monotonic() - start
        if pending and elapsed - last_report >= PROGRESS_EVERY_S:
            print(f"waiting for: {', '.join(pending)} ({elapsed:.0f} s)", flush=True)
            last_report = elapsed
        if pending and not warned and elapsed > SLOW_START_WARNING_S:
            print("still not ready after 5 minutes: check the log lines of the parts above", flush=True)
            warned = True
        time.sleep(0.5)
    return time.monotonic() - start


def main() -> None:
    print("waiting for every part of the stack to answer…", flush=True)
    print(banner(wait_all()), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()

"""Failure modes on a private Triton + adapter pair: overload, a crashed model stub, Triton killed and back.

Uses `private_inference` (its own processes), never the session Triton other tests share.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from tests.inference_fixtures import InferencePair

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RECOVERY_TIMEOUT_S = 60


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until check() held; fails the test after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"not {what} after {timeout} s")


def embed_status(url: str) -> int:
    return httpx.post(f"{url}/v1/embed", json={"input_text": "still there?"}, timeout=15).status_code


def assert_unavailable(response: httpx.Response, retry_after: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == retry_after
    body = response.json()
    assert body["code"] == "SERVICE_UNAVAILABLE" and body["error"] == "Service unavailable"
    assert "Traceback" not in response.text and "127.0.0.1" not in response.text


async def test_overload_is_503_with_retry_after_and_the_rest_succeed(
    private_inference: InferencePair,
) -> None:
    text = "a sentence about queues and batches " * 5
    async with httpx.AsyncClient(
        base_url=private_inference.adapter_url, timeout=60, limits=httpx.Limits(max_connections=100)
    ) as http:
        replies = await asyncio.gather(
            *(http.post("/v1/embed", json={"input_text": f"{i} {text}"}) for i in range(48))
        )
    statuses = Counter(r.status_code for r in replies)
    assert set(statuses) == {200, 503}, statuses  # the queue holds 4: the burst overflows it
    for reply in replies:
        if reply.status_code == 503:
            assert_unavailable(reply, retry_after="1")
            assert reply.json()["detail"] == "the inference backend is overloaded; retry shortly"
    metrics = httpx.get(f"{private_inference.adapter_url}/metrics").text
    assert f'adapter_triton_errors_total{{kind="overloaded"}} {float(statuses[503])}' in metrics


def test_a_crashed_model_stub_is_503_then_reloaded(private_inference: InferencePair) -> None:
    url = private_inference.adapter_url
    assert embed_status(url) == 200
    stub = private_inference.stub_pid()
    private_inference.kill(stub)
    response = httpx.post(f"{url}/v1/embed", json={"input_text": "anyone?"}, timeout=15)
    assert_unavailable(response, retry_after="5")
    # The launcher's watchdog notices the dead stub and reloads the model.
    wait_for(lambda: embed_status(url) == 200, RECOVERY_TIMEOUT_S, "serving again after the stub crash")
    assert private_inference.stub_pid() != stub


def test_triton_killed_is_503_everywhere_then_recovers(private_inference: InferencePair) -> None:
    url = private_inference.adapter_url
    assert embed_status(url) == 200
    assert private_inference.crash_triton() == 137  # the launcher reports the SIGKILL as a shell would

    assert_unavailable(
        httpx.post(f"{url}/v1/embed", json={"input_text": "hello"}, timeout=15), retry_after="5"
    )
    openai_style = httpx.post(f"{url}/v1/embeddings", json={"model": MODEL, "input": ["a", "b"]}, timeout=15)
    assert_unavailable(openai_style, retry_after="5")
    health = httpx.get(f"{url}/health", timeout=15)
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert health.json()["inference_service"]["status"] == "unavailable"
    ready = httpx.get(f"{url}/ready", timeout=15)
    assert ready.status_code == 503 and ready.json()["code"] == "SERVICE_UNAVAILABLE"

    private_inference.restart_triton()  # same ports; returns once Triton reports ready
    waited = wait_for(lambda: embed_status(url) == 200, 10, "serving again after Triton came back")
    assert waited < 5  # the adapter's short reconnect backoff, not gRPC's default of up to 2 minutes
    health = httpx.get(f"{url}/health", timeout=15)
    assert health.status_code == 200
    assert health.json()["inference_service"]["status"] == "healthy"
    assert health.json()["inference_service"]["device"] == "cpu"
    assert httpx.get(f"{url}/ready").status_code == 200

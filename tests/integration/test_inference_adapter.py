"""The adapter against a real Triton: `/v1/embed`, usage, JSON errors, /health, /ready, /metrics, docs."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import httpx
import pytest

from tests.inference_fixtures import TritonServer

DIM = 384
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def client(inference_adapter: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inference_adapter, timeout=30) as http:
        yield http


def embed(client: httpx.Client, text: str) -> dict:
    response = client.post("/v1/embed", json={"input_text": text})
    assert response.status_code == 200, response.text
    return response.json()


def model_stats(triton: TritonServer) -> tuple[int, int]:
    """(inference_count, execution_count) from Triton's statistics extension: texts and forward passes."""
    stats = httpx.get(f"{triton.http_url}/v2/models/embedder/stats", timeout=5).json()["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def test_embedding_is_a_unit_vector_with_usage(client: httpx.Client) -> None:
    body = embed(client, "Hello, world!")
    vector = body["embedding"]
    assert len(vector) == DIM and all(isinstance(x, float) for x in vector)
    assert abs(math.sqrt(sum(x * x for x in vector)) - 1) < 1e-3
    assert body["model"] == MODEL
    assert body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}  # [CLS] hello , world ! [SEP]


def test_same_text_same_vector_other_text_other_vector(client: httpx.Client) -> None:
    first = embed(client, "The cat sat on the mat.")["embedding"]
    again = embed(client, "The cat sat on the mat.")["embedding"]
    other = embed(client, "Quarterly revenue grew by four percent.")["embedding"]
    assert first == again
    assert sum(a * b for a, b in zip(first, other, strict=True)) < 0.9  # unrelated texts are not parallel


def test_tokens_grow_with_text_and_stop_at_the_model_limit(client: httpx.Client) -> None:
    short = embed(client, "one two")["usage"]["prompt_tokens"]
    longer = embed(client, "one two three four five six seven")["usage"]["prompt_tokens"]
    assert 0 < short < longer
    truncated = embed(client, "word " * 1000)  # ~1000 tokens in, 256 used (the model's max_length)
    assert truncated["usage"]["prompt_tokens"] == 256
    # Truncation keeps the start: what follows token 256 changes nothing.
    assert embed(client, "word " * 1000 + "zebra")["embedding"] == truncated["embedding"]


async def test_dynamic_batching_merges_concurrent_requests(
    inference_adapter: str, triton_server: TritonServer
) -> None:
    inferences_before, executions_before = model_stats(triton_server)
    async with httpx.AsyncClient(base_url=inference_adapter, timeout=30) as http:
        replies = await asyncio.gather(
            *(http.post("/v1/embed", json={"input_text": f"sentence number {i}"}) for i in range(32))
        )
    assert [r.status_code for r in replies] == [200] * 32
    assert len({tuple(r.json()["embedding"][:8]) for r in replies}) == 32
    inferences_after, executions_after = model_stats(triton_server)
    assert inferences_after - inferences_before == 32
    assert executions_after - executions_before < 32  # several requests per forward pass


@pytest.mark.parametrize(
    ("content", "mentions"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b'{"input_text": "caf\xe9"}', "not valid UTF-8"),
        (b'["input_text"]', "JSON object"),
        (b"{}", "input_text: field required"),
        (b'{"input_text": 42}', "input_text: must be a string, got integer"),
        (b'{"input_text": null}', "got null"),
        (b'{"input_text": ""}', "empty"),
        (b'{"input_text": " \\n\\t "}', "whitespace"),
        (b'{"input_text": "' + b"a" * 8193 + b'"}', "at most 8192 characters"),
    ],
)
def test_client_mistakes_are_422_json(client: httpx.Client, content: bytes, mentions: str) -> None:
    response = client.post("/v1/embed", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "Validation error" and body["code"] == "VALIDATION_ERROR"
    assert mentions in body["detail"]
    assert "Traceback" not in response.text


def test_unknown_path_is_404_json(client: httpx.Client) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_health_reports_the_model_and_device(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["gateway_version"] == "0.1.0"
    assert body["inference_service"] == {
        "status": "healthy",
        "model": MODEL,
        "device": "cpu",  # the session Triton runs with --device cpu
        "queue_size": 0,
        "inflight_batches": 0,
    }


async def test_health_reports_queue_size_under_load(inference_adapter: str) -> None:
    text = "a sentence about queues and batches " * 5  # ~30 tokens: a batch takes long enough to queue
    seen_queue, seen_inflight = 0, 0
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=inference_adapter, timeout=60, limits=limits) as http:
        load = asyncio.gather(
            *(http.post("/v1/embed", json={"input_text": f"{i} {text}"}) for i in range(96))
        )
        task = asyncio.ensure_future(load)
        while not task.done():
            health = (await http.get("/health")).json()["inference_service"]
            seen_queue = max(seen_queue, health["queue_size"])
            seen_inflight = max(seen_inflight, health["inflight_batches"])
            await asyncio.sleep(0.05)
        replies = await task
    assert [r.status_code for r in replies] == [200] * 96
    assert seen_queue > 0, "Triton's pending-request gauge never showed a queue"
    assert seen_inflight > 0


def test_ready(client: httpx.Client) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_metrics_are_prometheus_text(client: httpx.Client) -> None:
    embed(client, "count me")
    text = client.get("/metrics").text
    assert 'adapter_http_requests_total{route="/v1/embed",status="200"}' in text
    assert "adapter_embedded_texts_total" in text and "adapter_prompt_tokens_total" in text
    assert "adapter_http_request_duration_seconds_bucket" in text


def test_docs_are_served(client: httpx.Client) -> None:
    assert "swagger" in client.get("/docs").text.lower()
    assert "redoc" in client.get("/redoc").text.lower()
    schema = client.get("/openapi.json").json()
    assert {"/v1/embed", "/v1/embeddings", "/health", "/ready"} <= set(schema["paths"])

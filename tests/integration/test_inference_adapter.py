"""The adapter against a real Triton: embeddings, usage, JSON errors, /health and /ready."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import httpx
import pytest

from tests.inference_fixtures import TritonServer

DIM = 384


@pytest.fixture
def client(inference_adapter: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inference_adapter, timeout=30) as http:
        yield http


def embed(client: httpx.Client, text: str) -> dict:
    response = client.post("/v1/embed", json={"input_text": text})
    assert response.status_code == 200, response.text
    return response.json()


def metric(triton: TritonServer, name: str) -> float:
    lines = httpx.get(triton.metrics_url, timeout=5).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{"))


def test_embedding_is_a_unit_vector_with_usage(client: httpx.Client) -> None:
    body = embed(client, "Hello, world!")
    vector = body["embedding"]
    assert len(vector) == DIM and all(isinstance(x, float) for x in vector)
    assert abs(math.sqrt(sum(x * x for x in vector)) - 1) < 1e-3
    assert body["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"]


def test_same_text_same_vector_other_text_other_vector(client: httpx.Client) -> None:
    first = embed(client, "The cat sat on the mat.")["embedding"]
    again = embed(client, "The cat sat on the mat.")["embedding"]
    other = embed(client, "Quarterly revenue grew by four percent.")["embedding"]
    assert first == again
    assert first != other
    assert (
        sum(a * b for a, b in zip(first, other, strict=True)) < 0.9
    )  # unrelated texts are not near-parallel


def test_tokens_grow_with_text_and_stop_at_the_model_limit(client: httpx.Client) -> None:
    short = embed(client, "one two")["usage"]["prompt_tokens"]
    longer = embed(client, "one two three four five six seven")["usage"]["prompt_tokens"]
    assert 0 < short < longer
    truncated = embed(client, "word " * 1000)  # ~1000 tokens in, 256 used
    assert truncated["usage"]["prompt_tokens"] == 256


async def test_concurrent_requests_are_batched(inference_adapter: str, triton_server: TritonServer) -> None:
    executions_before = metric(triton_server, "nv_inference_exec_count")
    async with httpx.AsyncClient(base_url=inference_adapter, timeout=30) as http:
        replies = await asyncio.gather(
            *(http.post("/v1/embed", json={"input_text": f"sentence number {i}"}) for i in range(32))
        )
    assert [r.status_code for r in replies] == [200] * 32
    assert len({tuple(r.json()["embedding"][:8]) for r in replies}) == 32
    # Dynamic batching: fewer model executions than requests.
    assert metric(triton_server, "nv_inference_exec_count") - executions_before < 32


@pytest.mark.parametrize(
    ("content", "mentions"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
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
    service = body["inference_service"]
    assert service["status"] == "healthy"
    assert service["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert service["device"] == "cpu" or service["device"].startswith("cuda:")
    assert isinstance(service["queue_size"], int) and service["queue_size"] >= 0
    assert isinstance(service["inflight_batches"], int) and service["inflight_batches"] >= 0


def test_ready(client: httpx.Client) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_docs_are_served(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "input_text" in str(schema["paths"]["/v1/embed"]["post"]["requestBody"])

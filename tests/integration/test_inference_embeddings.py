"""`POST /v1/embeddings` (OpenAI shape) on a real Triton: order, determinism, encodings, limits, errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from inference.adapter.app import create_app
from inference.adapter.settings import AdapterSettings
from inference.adapter.triton_client import TritonEmbedder
from tests.inference_fixtures import TritonServer

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = ["The cat sat on the mat.", "Quarterly revenue grew by four percent.", "Hello!", "Bonjour le monde"]


@pytest.fixture
def client(inference_adapter: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inference_adapter, timeout=30) as http:
        yield http


def embeddings(client: httpx.Client, **body: object) -> dict:
    response = client.post("/v1/embeddings", json={"model": MODEL, **body})
    assert response.status_code == 200, response.text
    return response.json()


def vectors(body: dict) -> np.ndarray:
    return np.array([item["embedding"] for item in body["data"]], dtype=np.float32)


def one_by_one(client: httpx.Client, texts: list[str]) -> np.ndarray:
    singles = [client.post("/v1/embed", json={"input_text": t}).json()["embedding"] for t in texts]
    return np.array(singles, dtype=np.float32)


def test_a_list_comes_back_in_input_order(client: httpx.Client) -> None:
    body = embeddings(client, input=TEXTS)
    assert body["object"] == "list" and body["model"] == MODEL
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", i) for i in range(len(TEXTS))]
    got = vectors(body)
    assert got.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Each item is the embedding of its own text (padding in a batch changes nothing but rounding).
    np.testing.assert_allclose(got, one_by_one(client, TEXTS), atol=1e-5)
    tokens = [
        client.post("/v1/embed", json={"input_text": t}).json()["usage"]["prompt_tokens"] for t in TEXTS
    ]
    assert body["usage"] == {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}


def test_reversed_input_gives_reversed_output_and_repeats_are_identical(client: httpx.Client) -> None:
    forward = vectors(embeddings(client, input=TEXTS))
    backward = vectors(embeddings(client, input=TEXTS[::-1]))
    np.testing.assert_allclose(backward, forward[::-1], atol=1e-5)
    assert np.array_equal(vectors(embeddings(client, input=TEXTS)), forward)  # deterministic


def test_more_inputs_than_one_triton_batch_keep_their_order(client: httpx.Client) -> None:
    texts = [f"item number {i}: {'alpha beta gamma'[: i % 16]}" for i in range(150)]  # 3 requests of <= 64
    got = vectors(embeddings(client, input=texts))
    assert got.shape == (150, 384)
    sample = [0, 63, 64, 127, 128, 149]
    np.testing.assert_allclose(got[sample], one_by_one(client, [texts[i] for i in sample]), atol=1e-5)


def test_a_string_input_and_base64_encoding(client: httpx.Client) -> None:
    as_float = embeddings(client, input="Hello!")
    as_base64 = embeddings(client, input="Hello!", encoding_format="base64", dimensions=384)
    encoded = as_base64["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert decoded.tolist() == np.array(as_float["data"][0]["embedding"], dtype=np.float32).tolist()
    assert as_base64["usage"] == as_float["usage"]


def test_model_aliases(client: httpx.Client) -> None:
    for name in ("all-MiniLM-L6-v2", "embedder"):
        assert client.post("/v1/embeddings", json={"model": name, "input": "x"}).json()["model"] == MODEL


def test_long_inputs_are_truncated_and_usage_says_so(client: httpx.Client) -> None:
    body = embeddings(client, input=["word " * 1000, "short text"])
    assert body["usage"]["prompt_tokens"] == 256 + 4  # 256 = the model's max_length; [CLS] short text [SEP]


@pytest.mark.parametrize(
    ("content", "mentions"),
    [
        (b"", "request body is empty"),
        (b"input=hello", "not valid JSON"),
        (b'{"model": "embedder", "input": "caf\xe9"}', "not valid UTF-8"),
        (b'{"model": "embedder", "input": "\\udc00"}', "not valid JSON"),
        (b'{"model": "embedder"}', "input: field required"),
        (b'{"input": "hi"}', "model: field required"),
        (b'{"model": "text-embedding-3-small", "input": "hi"}', "unknown model 'text-embedding-3-small'"),
        (b'{"model": "embedder", "input": 5}', "input: must be a string or an array of strings, got integer"),
        (b'{"model": "embedder", "input": []}', "input: must not be an empty array"),
        (b'{"model": "embedder", "input": ["ok", ""]}', "input[1]: must not be empty"),
        (b'{"model": "embedder", "input": ["ok", null]}', "input[1]: must be a string, got null"),
        (b'{"model": "embedder", "input": [[1, 2]]}', "token-id arrays are not supported"),
        (
            b'{"model": "embedder", "input": ["' + b"a" * 8193 + b'"]}',
            "input[0]: must be at most 8192 characters",
        ),
        (b'{"model": "embedder", "input": "x", "encoding_format": "int8"}', "encoding_format"),
        (
            b'{"model": "embedder", "input": "x", "dimensions": 128}',
            "only produces 384-dimensional embeddings",
        ),
        (b'{"model": "embedder", "input": "x", "dimensions": -1}', "dimensions: must be a positive integer"),
    ],
)
def test_client_mistakes_are_422_json(client: httpx.Client, content: bytes, mentions: str) -> None:
    response = client.post("/v1/embeddings", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["code"]) == ("Validation error", "VALIDATION_ERROR")
    assert mentions in body["detail"]


def test_too_many_inputs_is_422_before_any_inference(
    client: httpx.Client, triton_server: TritonServer
) -> None:
    before = httpx.get(f"{triton_server.http_url}/v2/models/embedder/stats").json()["model_stats"][0]
    response = client.post("/v1/embeddings", json={"model": MODEL, "input": ["x"] * 257})
    assert response.status_code == 422
    assert response.json()["detail"] == "input: at most 256 items per request, got 257"
    after = httpx.get(f"{triton_server.http_url}/v2/models/embedder/stats").json()["model_stats"][0]
    assert after["inference_count"] == before["inference_count"]


class MismatchedEmbedder(TritonEmbedder):
    """Asks for an output the model does not have, as after a bad deploy: Triton answers INVALID_ARG."""

    embedding_output = "NOT_AN_OUTPUT"


def test_a_triton_error_is_502_without_internals(triton_server: TritonServer) -> None:
    settings = AdapterSettings(
        triton_grpc_url=triton_server.grpc_url, triton_metrics_url=triton_server.metrics_url
    )
    embedder = MismatchedEmbedder(settings.triton_grpc_url, settings.model)
    with TestClient(create_app(settings, embedder), raise_server_exceptions=False) as http:
        response = http.post("/v1/embeddings", json={"model": MODEL, "input": ["a", "b"]})
        metrics = http.get("/metrics").text
    assert response.status_code == 502
    assert response.json() == {
        "error": "Bad gateway",
        "detail": "the inference backend failed to process the request",
        "code": "INTERNAL_ERROR",
    }
    assert 'adapter_triton_errors_total{kind="failed"} 1.0' in metrics

"""The adapter app in-process: response shapes and JSON errors, with a fake or an unreachable Triton."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from fastapi.testclient import TestClient

from inference.adapter.app import create_app
from inference.adapter.settings import AdapterSettings
from inference.adapter.triton_client import (
    Embeddings,
    ModelInfo,
    TritonEmbedder,
    TritonFailure,
    TritonUnavailable,
)

DEAD = "127.0.0.1:9"  # discard port: nothing listens, connections are refused at once
SETTINGS = AdapterSettings(
    triton_grpc_url=DEAD, triton_metrics_url=f"http://{DEAD}/metrics", max_input_chars=50, max_inputs=4
)
MODEL = SETTINGS.model_display_name


class FakeEmbedder(TritonEmbedder):
    """Answers like Triton would (vector i = one-hot of the text's length); `fail` makes embed raise it."""

    def __init__(self) -> None:
        super().__init__(DEAD, "embedder")
        self.fail: Exception | None = None
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str], batched: bool = True) -> Embeddings:
        self.calls.append(list(texts))
        if self.fail:
            raise self.fail
        vectors = np.zeros((len(texts), 384), dtype=np.float32)
        vectors[np.arange(len(texts)), [len(t) for t in texts]] = 1.0
        return Embeddings(
            vectors=vectors, tokens=np.array([len(t.split()) + 2 for t in texts], dtype=np.int32)
        )

    async def ready(self) -> bool:
        return True

    async def info(self) -> ModelInfo:
        return ModelInfo(device="cuda:0", max_batch_size=64, dim=384)


@pytest.fixture
def fake() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def client(fake: FakeEmbedder) -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS, fake), raise_server_exceptions=False) as http:
        yield http


@pytest.fixture
def offline_client() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS), raise_server_exceptions=False) as http:
        yield http


def test_embed_shape(client: TestClient) -> None:
    body = client.post("/v1/embed", json={"input_text": "two words"}).json()
    assert len(body["embedding"]) == 384 and body["embedding"][9] == 1.0
    assert body["model"] == MODEL
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_embeddings_in_openai_shape_and_order(client: TestClient, fake: FakeEmbedder) -> None:
    response = client.post("/v1/embeddings", json={"model": "embedder", "input": ["a", "bbb", "cc"]})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert [int(np.argmax(d["embedding"])) for d in body["data"]] == [1, 3, 2]  # each vector is its text's
    assert body["usage"] == {"prompt_tokens": 9, "total_tokens": 9}
    assert fake.calls == [["a", "bbb", "cc"]]  # one call for the list: the client chunks by batch size


def test_embeddings_dimensions(client: TestClient) -> None:
    ok = client.post("/v1/embeddings", json={"model": MODEL, "input": "a", "dimensions": 384})
    assert ok.status_code == 200
    refused = client.post("/v1/embeddings", json={"model": MODEL, "input": "a", "dimensions": 256})
    assert refused.status_code == 422
    assert refused.json()["code"] == "VALIDATION_ERROR"
    assert "only produces 384-dimensional" in refused.json()["detail"]


def test_embeddings_too_many_inputs(client: TestClient, fake: FakeEmbedder) -> None:
    response = client.post("/v1/embeddings", json={"model": MODEL, "input": ["a"] * 5})
    assert response.status_code == 422
    assert response.json()["detail"] == "input: at most 4 items per request, got 5"
    assert fake.calls == []


def test_health_when_ready(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["inference_service"]["device"] == "cuda:0"
    assert body["inference_service"]["queue_size"] == 0  # metrics unreachable: reported as 0


@pytest.mark.parametrize("path", ["/v1/embed", "/v1/embeddings"])
def test_triton_error_is_502_without_internals(client: TestClient, fake: FakeEmbedder, path: str) -> None:
    fake.fail = TritonFailure("StatusCode.INTERNAL: embedding failed: CUDA out of memory")
    response = client.post(path, json={"input_text": "hi", "input": "hi", "model": MODEL})
    assert response.status_code == 502
    assert response.json() == {
        "error": "Bad gateway",
        "detail": "the inference backend failed to process the request",
        "code": "INTERNAL_ERROR",
    }


def test_overloaded_triton_is_503_with_a_short_retry_after(client: TestClient, fake: FakeEmbedder) -> None:
    fake.fail = TritonUnavailable(
        "Triton: StatusCode.UNAVAILABLE Exceeds maximum queue size", overloaded=True
    )
    response = client.post("/v1/embed", json={"input_text": "hi"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"] == "the inference backend is overloaded; retry shortly"


def test_unexpected_error_is_500_json(client: TestClient, fake: FakeEmbedder) -> None:
    fake.fail = RuntimeError("boom")
    response = client.post("/v1/embed", json={"input_text": "hi"})
    assert response.status_code == 500
    assert response.json()["code"] == "INTERNAL_ERROR"
    assert "boom" not in response.text and "Traceback" not in response.text


def test_too_long_uses_the_configured_limit(client: TestClient) -> None:
    response = client.post("/v1/embed", json={"input_text": "x" * 51})
    assert response.status_code == 422
    assert response.json()["detail"] == "input_text: must be at most 50 characters, got 51"


def test_wrong_method_is_405_json(client: TestClient) -> None:
    response = client.get("/v1/embeddings")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


def test_triton_down_embed_is_503_with_retry_after(offline_client: TestClient) -> None:
    for path in ("/v1/embed", "/v1/embeddings"):
        response = offline_client.post(path, json={"input_text": "hi", "input": ["a", "b"], "model": MODEL})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["code"] == "SERVICE_UNAVAILABLE"
        assert DEAD not in response.text  # no internal addresses for clients


def test_triton_down_health_is_503_degraded(offline_client: TestClient) -> None:
    response = offline_client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["inference_service"]["status"] == "unavailable"
    assert body["inference_service"]["device"] == "unknown"
    assert body["inference_service"]["inflight_batches"] == 0


def test_triton_down_ready_is_503(offline_client: TestClient) -> None:
    response = offline_client.get("/ready")
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"


def test_validation_still_works_without_triton(offline_client: TestClient) -> None:
    response = offline_client.post("/v1/embed", content=b"{}")
    assert response.status_code == 422
    assert response.json()["detail"] == "input_text: field required"


def test_huge_body_is_refused_before_reading(client: TestClient) -> None:
    response = client.post(
        "/v1/embed", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "VALIDATION_ERROR"


def test_huge_chunked_body_is_refused_while_reading(client: TestClient, fake: FakeEmbedder) -> None:
    chunks = (b"x" * 65536 for _ in range(40))  # no Content-Length: sent chunked
    response = client.post("/v1/embed", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["detail"]
    assert fake.calls == []


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    client.post("/v1/embeddings", json={"model": MODEL, "input": ["a", "b"]})
    client.post("/v1/embed", json={})
    client.get("/wp-login.php")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'adapter_http_requests_total{route="/v1/embeddings",status="200"} 1.0' in text
    assert 'adapter_http_requests_total{route="/v1/embed",status="422"} 1.0' in text
    assert 'adapter_http_requests_total{route="other",status="404"} 1.0' in text
    assert "adapter_embedded_texts_total 2.0" in text
    assert "adapter_triton_inflight_requests 0.0" in text
    assert 'adapter_http_request_duration_seconds_count{route="/v1/embeddings"} 1.0' in text


def test_openapi_documents_both_endpoints(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "input_text" in str(schema["paths"]["/v1/embed"]["post"]["requestBody"])
    embeddings = schema["paths"]["/v1/embeddings"]["post"]
    assert "encoding_format" in str(embeddings["requestBody"])
    assert {"200", "422", "502", "503"} <= set(embeddings["responses"])

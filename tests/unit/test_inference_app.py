"""The adapter app in-process: response shapes and JSON errors, with a fake or an unreachable Triton."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from inference.adapter.app import create_app
from inference.adapter.settings import AdapterSettings
from inference.adapter.triton_client import Embedding, TritonEmbedder, TritonFailure

DEAD = "127.0.0.1:9"  # discard port: nothing listens, connections are refused at once
SETTINGS = AdapterSettings(
    triton_grpc_url=DEAD, triton_metrics_url=f"http://{DEAD}/metrics", max_input_chars=50
)


class FakeEmbedder(TritonEmbedder):
    """Answers like Triton would; `fail` makes the next embed raise it."""

    def __init__(self) -> None:
        super().__init__(DEAD, "embedder")
        self.fail: Exception | None = None

    async def embed(self, text: str) -> Embedding:
        if self.fail:
            raise self.fail
        vector = np.full(384, 1 / np.sqrt(384), dtype=np.float32)
        return Embedding(vector=vector, tokens=len(text.split()) + 2)

    async def ready(self) -> bool:
        return True

    async def device(self) -> str | None:
        return "cuda:0"


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
    assert len(body["embedding"]) == 384
    assert body["model"] == SETTINGS.model_display_name
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_health_when_ready(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["inference_service"]["device"] == "cuda:0"
    assert body["inference_service"]["queue_size"] == 0  # metrics unreachable: reported as 0


def test_model_failure_is_500_without_internals(client: TestClient, fake: FakeEmbedder) -> None:
    fake.fail = TritonFailure("StatusCode.INTERNAL: embedding failed: CUDA out of memory")
    response = client.post("/v1/embed", json={"input_text": "hi"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "Internal server error",
        "detail": "inference failed",
        "code": "INTERNAL_ERROR",
    }


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
    response = client.get("/v1/embed")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


def test_triton_down_embed_is_503_with_retry_after(offline_client: TestClient) -> None:
    response = offline_client.post("/v1/embed", json={"input_text": "hi"})
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert DEAD not in response.text  # no internal addresses for clients


def test_triton_down_health_is_200_degraded(offline_client: TestClient) -> None:
    response = offline_client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["inference_service"]["status"] == "unavailable"
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

"""The detection router in-process: request parsing, response shapes, JSON errors (fake or dead Triton)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from inference.adapter.app import create_app
from inference.adapter.detect import (
    MAX_BATCH_TEXTS,
    TritonDetector,
    detection_body,
    parse_batch_body,
    parse_detect_body,
)
from inference.adapter.settings import AdapterSettings
from inference.adapter.triton_client import TritonFailure, TritonUnavailable
from inference.adapter.validation import InvalidRequest
from inference.detection.verdict import Verdict

DEAD = "127.0.0.1:9"  # discard port: nothing listens, connections are refused at once
SETTINGS = AdapterSettings(
    triton_grpc_url=DEAD, triton_metrics_url=f"http://{DEAD}/metrics", max_input_chars=50
)
BENIGN_ROW = [0.9, 0.04, 0.03, 0.02, 0.01]
ATTACK_ROW = [0.05, 0.85, 0.05, 0.03, 0.02]


class FakeDetector(TritonDetector):
    """Texts containing 'attack' get ATTACK_ROW, others BENIGN_ROW; `fail` makes the call raise it."""

    def __init__(self) -> None:
        super().__init__(DEAD)
        self.fail: Exception | None = None
        self.calls: list[list[str]] = []

    async def classify(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        self.calls.append(list(texts))
        if self.fail:
            raise self.fail
        rows = [ATTACK_ROW if "attack" in t else BENIGN_ROW for t in texts]
        return np.array(rows, dtype=np.float32), sum(len(t.split()) for t in texts)

    async def device(self) -> str:
        return "cuda:0"


def app_with(detector: TritonDetector | None) -> TestClient:
    app = create_app(SETTINGS, detector=detector)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def fake() -> FakeDetector:
    return FakeDetector()


@pytest.fixture
def client(fake: FakeDetector) -> Iterator[TestClient]:
    with app_with(fake) as http:
        yield http


def assert_validation_error(response: httpx.Response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "code"} and body["code"] == "VALIDATION_ERROR"
    return body["detail"]


def test_detect_has_seed_003_shape(client: TestClient) -> None:
    body = client.post("/v1/detect", json={"text": "an attack"}).json()
    assert set(body) == {"is_malicious", "confidence", "threat_types", "processing_time_ms", "endpoint"}
    assert body["is_malicious"] is True and body["threat_types"] == ["jailbreak"]
    assert body["confidence"] == pytest.approx(0.95, abs=1e-4)
    assert body["endpoint"] == "minilm-detector@cuda:0" and body["processing_time_ms"] >= 0


def test_benign_text_has_no_threat_types(client: TestClient) -> None:
    body = client.post("/v1/detect", json={"text": "hello there"}).json()
    assert body["is_malicious"] is False and body["threat_types"] == []
    assert body["confidence"] == pytest.approx(0.9, abs=1e-4)


def test_batch_keeps_order_in_one_triton_call(client: TestClient, fake: FakeDetector) -> None:
    texts = ["hi", "attack one", "plain", "attack two"]
    body = client.post("/v1/detect/batch", json={"texts": texts}).json()
    assert fake.calls == [texts]
    assert [r["is_malicious"] for r in body["results"]] == [False, True, False, True]
    assert body["count"] == 4 and body["endpoint"] == "minilm-detector@cuda:0"
    assert all(r["processing_time_ms"] == body["processing_time_ms"] for r in body["results"])


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"", "request body is empty"),
        (b"{not json", "not valid JSON"),
        (b'["text"]', "must be a JSON object"),
        (b'{"input_text": "x"}', "text: field required"),
        (b'{"text": 3}', "text: must be a string, got integer"),
        (b'{"text": "   "}', "text: must not be empty"),
        (b'{"text": "' + b"a" * 51 + b'"}', "at most 50 characters"),
    ],
)
def test_detect_validation_errors_are_json_422(client: TestClient, payload: bytes, detail: str) -> None:
    response = client.post("/v1/detect", content=payload, headers={"content-type": "application/json"})
    assert detail in assert_validation_error(response)


@pytest.mark.parametrize(
    ("texts", "detail"),
    [
        (None, "texts: must be an array of strings, got null"),
        ("one", "texts: must be an array of strings, got string"),
        ([], "texts: must not be an empty array"),
        (["ok", 5], "texts[1]: must be a string, got integer"),
        (["ok", ""], "texts[1]: must not be empty"),
        (
            ["x"] * (MAX_BATCH_TEXTS + 1),
            f"at most {MAX_BATCH_TEXTS} items per request",
        ),
    ],
)
def test_batch_validation_errors_are_json_422(client: TestClient, texts: object, detail: str) -> None:
    assert detail in assert_validation_error(client.post("/v1/detect/batch", json={"texts": texts}))


def test_missing_texts_and_oversize_body(client: TestClient) -> None:
    assert "texts: field required" in assert_validation_error(client.post("/v1/detect/batch", json={}))
    big = b'{"text": "' + b"a" * 100_000 + b'"}'
    assert "limit" in assert_validation_error(client.post("/v1/detect", content=big), status=413)


def test_wrong_method_is_json_405(client: TestClient) -> None:
    response = client.get("/v1/detect")
    assert response.status_code == 405 and response.json()["code"] == "METHOD_NOT_ALLOWED"


def test_triton_errors_are_json_503_and_502(client: TestClient, fake: FakeDetector) -> None:
    fake.fail = TritonUnavailable("down")
    response = client.post("/v1/detect", json={"text": "x y"})
    assert response.status_code == 503 and response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["retry-after"]
    fake.fail = TritonFailure("bad output")
    response = client.post("/v1/detect/batch", json={"texts": ["x y"]})
    assert response.status_code == 502 and response.json()["code"] == "INTERNAL_ERROR"


def test_unreachable_triton_is_json_503() -> None:
    with app_with(None) as http:
        response = http.post("/v1/detect", json={"text": "hello"})
    assert response.status_code == 503 and response.json()["code"] == "SERVICE_UNAVAILABLE"


def test_docs_describe_both_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "requestBody" in paths["/v1/detect"]["post"] and "/v1/detect/batch" in paths


def test_parsers_and_body_builder_directly() -> None:
    assert parse_detect_body(b'{"text": "hi", "extra": 1}', 10) == "hi"
    assert parse_batch_body(b'{"texts": ["a", "b"]}', 10, max_texts=2) == ["a", "b"]
    with pytest.raises(InvalidRequest, match="at most 1 items"):
        parse_batch_body(b'{"texts": ["a", "b"]}', 10, max_texts=1)
    body = detection_body(Verdict(True, 0.912345, ("prompt_injection",)), 12.3456, "m@cpu")
    assert body == {
        "is_malicious": True,
        "confidence": 0.9123,
        "threat_types": ["prompt_injection"],
        "processing_time_ms": 12.35,
        "endpoint": "m@cpu",
    }


def test_router_lifespan_opens_and_closes_its_channel(fake: FakeDetector) -> None:
    with app_with(fake):
        assert fake._client is not None  # opened by the router's lifespan, merged into the app's
    assert fake._client is None

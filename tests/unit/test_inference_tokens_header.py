"""x-gateway-tokens (= usage.prompt_tokens) on every successful inference response, on the fast path
and the framework routes alike; none on errors (Envoy then charges no tokens)."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from inference.adapter.app import create_app
from tests.unit.test_detect_api import FakeDetector
from tests.unit.test_inference_app import SETTINGS, FakeEmbedder

TEXTS = ["one two three", "four", "five six"]


@pytest.fixture(params=[True, False], ids=["fast-path", "framework"])
def client(request: pytest.FixtureRequest) -> TestClient:
    settings = dataclasses.replace(SETTINGS, fast_path=request.param)
    return TestClient(create_app(settings, FakeEmbedder(), FakeDetector()), raise_server_exceptions=False)


def test_embed_and_embeddings_report_their_prompt_tokens(client: TestClient) -> None:
    with client:
        one = client.post("/v1/embed", json={"input_text": "one two three"})
        assert one.status_code == 200
        assert one.headers["x-gateway-tokens"] == str(one.json()["usage"]["prompt_tokens"]) == "5"
        batch = client.post("/v1/embeddings", json={"input": TEXTS, "model": SETTINGS.model})
        assert batch.status_code == 200
        assert batch.headers["x-gateway-tokens"] == str(batch.json()["usage"]["prompt_tokens"]) == "12"


def test_detect_reports_the_embedder_tokens(client: TestClient) -> None:
    with client:
        assert client.post("/v1/detect", json={"text": "one two"}).headers["x-gateway-tokens"] == "2"
        batch = client.post("/v1/detect/batch", json={"texts": TEXTS})
        assert batch.status_code == 200 and batch.headers["x-gateway-tokens"] == "6"


def test_errors_carry_no_token_count(client: TestClient) -> None:
    with client:
        bad = client.post("/v1/embeddings", json={"input": []})
        assert bad.status_code == 422 and "x-gateway-tokens" not in bad.headers

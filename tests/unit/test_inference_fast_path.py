"""The fast path (plain ASGI for /v1/embed and /v1/embeddings) answers exactly as FastAPI does.

Two apps over the same fake Triton, fast path on and off; random bodies (valid, malformed,
wrong types, oversize, unknown fields, Triton failing) must give the same status, headers and
body, byte for byte."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.adapter.app import create_app
from inference.adapter.triton_client import TritonFailure, TritonUnavailable
from tests.unit.test_detect_api import FakeDetector
from tests.unit.test_inference_app import SETTINGS, FakeEmbedder

KEPT_HEADERS = ("content-type", "content-length", "retry-after", "allow")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=70)  # SETTINGS allow 50 characters: some are too long
embed_bodies = st.one_of(
    st.builds(lambda t: {"input_text": t}, texts | json_values),
    st.dictionaries(st.sampled_from(["input_text", "text", "model"]), texts, max_size=3),
    json_values,
)
embeddings_bodies = st.fixed_dictionaries(
    {"input": texts | st.lists(texts, max_size=6) | json_values},
    optional={
        "model": st.sampled_from(["embedder", "all-MiniLM-L6-v2", "gpt", ""]) | json_values,
        "encoding_format": st.sampled_from(["float", "base64", "hex"]),
        "dimensions": st.integers(-2, 500) | json_values,
        "user": st.text(max_size=5),
    },
)
raw_bodies = st.binary(max_size=120) | st.sampled_from(
    [b"", b"   ", b"{", b'{"input_text": "\\ud800"}', b"[]"]
)


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[FakeEmbedder, TestClient, TestClient]]:
    fake, detector = FakeEmbedder(), FakeDetector()
    fast = create_app(SETTINGS, fake, detector)
    framework = create_app(dataclasses.replace(SETTINGS, fast_path=False), fake, detector)
    with (
        TestClient(fast, raise_server_exceptions=False) as a,
        TestClient(framework, raise_server_exceptions=False) as b,
    ):
        yield fake, a, b


def comparable(response: httpx.Response) -> tuple[int, dict[str, str | None], object]:
    """Status, the headers that matter, and the body (detect's timing field left out)."""
    body: object = response.content
    if response.status_code == 200 and b"processing_time_ms" in response.content:
        body = json.loads(
            response.content, object_hook=lambda d: {k: v for k, v in d.items() if k != "processing_time_ms"}
        )
        headers = {h: response.headers.get(h) for h in KEPT_HEADERS if h != "content-length"}
    else:
        headers = {h: response.headers.get(h) for h in KEPT_HEADERS}
    return response.status_code, headers, body


def same_answer(pair: tuple[FakeEmbedder, TestClient, TestClient], path: str, body: bytes) -> None:
    _, fast, framework = pair
    answers = [
        c.post(path, content=body, headers={"content-type": "application/json"}) for c in (fast, framework)
    ]
    assert comparable(answers[0]) == comparable(answers[1]), (path, body[:200])


PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(body=embed_bodies)
def test_embed_bodies(pair, body) -> None:
    same_answer(pair, "/v1/embed", json.dumps(body).encode())


@PROPERTY
@given(body=embeddings_bodies)
def test_embeddings_bodies(pair, body) -> None:
    same_answer(pair, "/v1/embeddings", json.dumps(body).encode())


detect_bodies = st.one_of(
    st.builds(lambda t: {"text": t}, texts | json_values),
    st.builds(lambda t: {"texts": t}, st.lists(texts, max_size=5) | json_values),
    json_values,
)


@PROPERTY
@given(body=detect_bodies, path=st.sampled_from(["/v1/detect", "/v1/detect/batch"]))
def test_detect_bodies(pair, body, path) -> None:
    same_answer(pair, path, json.dumps(body).encode())


@PROPERTY
@given(
    body=raw_bodies, path=st.sampled_from(["/v1/embed", "/v1/embeddings", "/v1/detect", "/v1/detect/batch"])
)
def test_raw_bytes(pair, body, path) -> None:
    same_answer(pair, path, body)


@pytest.mark.parametrize(
    "failure",
    [
        TritonUnavailable("down"),
        TritonUnavailable("full", overloaded=True),
        TritonFailure("bad"),
        RuntimeError("bug"),
    ],
)
def test_triton_failures_answer_the_same(pair, failure: Exception) -> None:
    fake = pair[0]
    fake.fail = failure
    try:
        same_answer(pair, "/v1/embed", b'{"input_text": "hi"}')
        same_answer(pair, "/v1/embeddings", b'{"model": "embedder", "input": ["a", "b"]}')
    finally:
        fake.fail = None


def test_oversize_and_streamed_bodies_answer_the_same(pair) -> None:
    big = json.dumps({"input_text": "x" * 2000}).encode() + b" " * 700_000
    same_answer(pair, "/v1/embed", big)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
        yield b'{"input_text": "'
        yield b"y" * 800_000
        yield b'"}'

    _, fast, framework = pair
    answers = [c.post("/v1/embed", content=chunks()) for c in (fast, framework)]
    assert answers[0].status_code == answers[1].status_code == 413
    assert answers[0].content == answers[1].content


def test_other_methods_and_paths_still_go_through_the_framework(pair) -> None:
    _, fast, framework = pair
    for method, path in (
        ("GET", "/v1/embed"),
        ("PUT", "/v1/embeddings"),
        ("POST", "/v1/embed/"),
        ("GET", "/ready"),
    ):
        a, b = (
            fast.request(method, path, follow_redirects=False),
            framework.request(method, path, follow_redirects=False),
        )
        assert (a.status_code, a.content) == (b.status_code, b.content), (method, path)

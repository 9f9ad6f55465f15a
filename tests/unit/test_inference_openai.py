"""`POST /v1/embeddings` (OpenAI shape): request parsing and response building, pure."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from inference.adapter.openai_compat import (
    EmbeddingsRequest,
    check_dimensions,
    embeddings_body,
    parse_embeddings_body,
)
from inference.adapter.validation import InvalidRequest

NAMES = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "embedder")
MODEL = NAMES[0]


def parse(body: dict | bytes, max_chars: int = 10, max_inputs: int = 3) -> EmbeddingsRequest:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return parse_embeddings_body(raw, max_chars=max_chars, max_inputs=max_inputs, model_names=NAMES)


def test_a_string_is_one_input_with_float_encoding() -> None:
    assert parse({"model": MODEL, "input": "hi"}) == EmbeddingsRequest(["hi"], "float", None)


def test_a_list_keeps_its_order_and_options() -> None:
    request = parse(
        {
            "model": "embedder",
            "input": ["b", "a", "c"],
            "encoding_format": "base64",
            "dimensions": 384,
            "user": "u",
        }
    )
    assert request == EmbeddingsRequest(["b", "a", "c"], "base64", 384)


def test_explicit_null_options_mean_defaults() -> None:
    assert parse(
        {"model": MODEL, "input": "x", "encoding_format": None, "dimensions": None}
    ).encoding_format == ("float")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "request body is empty"),
        (b"nope", "not valid JSON"),
        (b'{"model": "embedder", "input": "\xff"}', "not valid UTF-8"),
        ([1, 2], "must be a JSON object"),
        ({"model": MODEL}, "input: field required"),
        ({"input": "hi"}, "model: field required"),
        ({"model": 3, "input": "hi"}, "model: must be a string, got integer"),
        ({"model": "gpt-4", "input": "hi"}, "model: unknown model 'gpt-4'; this endpoint serves"),
        ({"model": MODEL, "input": None}, "input: must be a string or an array of strings, got null"),
        ({"model": MODEL, "input": {"a": 1}}, "got object"),
        ({"model": MODEL, "input": ""}, "input: must not be empty"),
        ({"model": MODEL, "input": []}, "input: must not be an empty array"),
        ({"model": MODEL, "input": ["a", "b", "c", "d"]}, "input: at most 3 items per request, got 4"),
        ({"model": MODEL, "input": ["a", 7]}, "input[1]: must be a string, got integer"),
        ({"model": MODEL, "input": ["a", "  "]}, "input[1]: must not be empty"),
        ({"model": MODEL, "input": ["a", "x" * 11]}, "input[1]: must be at most 10 characters, got 11"),
        ({"model": MODEL, "input": [101, 7592]}, "token-id arrays are not supported"),
        ({"model": MODEL, "input": [[101, 7592]]}, "token-id arrays are not supported"),
        (
            {"model": MODEL, "input": "x", "encoding_format": "int8"},
            "encoding_format: must be 'float' or 'base64'",
        ),
        ({"model": MODEL, "input": "x", "encoding_format": 1}, "got 'integer'"),
        ({"model": MODEL, "input": "x", "dimensions": 0}, "dimensions: must be a positive integer, got 0"),
        ({"model": MODEL, "input": "x", "dimensions": "384"}, "dimensions: must be a positive integer"),
        ({"model": MODEL, "input": "x", "dimensions": True}, "dimensions: must be a positive integer"),
        ({"model": MODEL, "input": "x", "user": 5}, "user: must be a string, got integer"),
    ],
)
def test_client_mistakes_name_the_field(body: dict | bytes, detail: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(body)
    assert detail in info.value.detail
    assert info.value.status == 422


def test_dimensions_other_than_the_models_are_refused_clearly() -> None:
    check_dimensions(None, 384)
    check_dimensions(384, 384)
    with pytest.raises(InvalidRequest, match="only produces 384-dimensional embeddings; omit dimensions"):
        check_dimensions(256, 384)


def test_response_in_openai_shape_with_floats() -> None:
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    body = orjson.loads(
        orjson.dumps(embeddings_body(vectors, 7, MODEL, "float"), option=orjson.OPT_SERIALIZE_NUMPY)
    )
    assert body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.0, 0.1, 0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4, 0.5]},
        ],
        "model": MODEL,
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }


def test_base64_is_little_endian_float32_as_openai_clients_decode_it() -> None:
    vectors = np.array([[0.5, -1.25, 3.0e-8]], dtype=np.float32)
    encoded = embeddings_body(vectors, 1, MODEL, "base64")["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")  # what the openai client does
    assert decoded.tolist() == vectors[0].tolist()

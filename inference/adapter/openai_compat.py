"""`POST /v1/embeddings` in OpenAI's shape: parse the request, build the response. Pure functions.

Request: {"input": str | [str, ...], "model": str, "encoding_format": "float" | "base64",
"dimensions": int, "user": str}. Token-id input (arrays of integers) is refused: this model has
its own tokenizer, so ids from another tokenizer would be meaningless.
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.adapter.validation import InvalidRequest, check_text, json_type_name, parse_json_object

ENCODINGS = ("float", "base64")
EXAMPLE = '{"model": "…", "input": "some text"}'


@dataclass(frozen=True)
class EmbeddingsRequest:
    texts: list[str]
    encoding_format: str  # "float" | "base64"
    dimensions: int | None  # None: the model's own width


def _texts(value: Any, max_chars: int, max_inputs: int) -> list[str]:
    if isinstance(value, str):
        return [check_text(value, "input", max_chars)]
    if not isinstance(value, list):
        raise InvalidRequest(f"input: must be a string or an array of strings, got {json_type_name(value)}")
    if not value:
        raise InvalidRequest("input: must not be an empty array")
    if len(value) > max_inputs:
        raise InvalidRequest(f"input: at most {max_inputs} items per request, got {len(value)}")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value) or all(
        isinstance(item, list) for item in value
    ):
        raise InvalidRequest("input: token-id arrays are not supported; send text (a string or strings)")
    return [check_text(item, f"input[{i}]", max_chars) for i, item in enumerate(value)]


def parse_embeddings_body(
    raw: bytes, *, max_chars: int, max_inputs: int, model_names: Collection[str]
) -> EmbeddingsRequest:
    data = parse_json_object(raw, EXAMPLE)
    for field in ("input", "model"):
        if field not in data:
            raise InvalidRequest(f"{field}: field required")
    model = data["model"]
    if not isinstance(model, str):
        raise InvalidRequest(f"model: must be a string, got {json_type_name(model)}")
    if model not in model_names:
        served = ", ".join(repr(name) for name in model_names)
        raise InvalidRequest(f"model: unknown model {model!r}; this endpoint serves {served}")
    texts = _texts(data["input"], max_chars, max_inputs)

    encoding = data.get("encoding_format")
    if encoding is None:
        encoding = "float"
    elif encoding not in ENCODINGS:
        shown = encoding if isinstance(encoding, str) else json_type_name(encoding)
        raise InvalidRequest(f"encoding_format: must be 'float' or 'base64', got {shown!r}")

    dimensions = data.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1
    ):
        raise InvalidRequest(f"dimensions: must be a positive integer, got {dimensions!r}")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest(f"user: must be a string, got {json_type_name(user)}")
    return EmbeddingsRequest(texts=texts, encoding_format=encoding, dimensions=dimensions)


def check_dimensions(requested: int | None, native: int) -> None:
    """The model cannot shorten its vectors (it is not Matryoshka-trained): only its own width is served."""
    if requested is not None and requested != native:
        raise InvalidRequest(
            f"dimensions: this model only produces {native}-dimensional embeddings; "
            f"omit dimensions or send {native}, got {requested}"
        )


def _encode(vector: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":  # OpenAI's format: little-endian float32 bytes
        return base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode("ascii")
    return vector  # orjson writes float32 arrays natively


def embeddings_body(vectors: np.ndarray, prompt_tokens: int, model: str, encoding: str) -> dict[str, Any]:
    """The response for `vectors` (n, dim) in request order."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(vectors[i], encoding)}
            for i in range(len(vectors))
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }

"""Parse and check a `POST /v1/embed` body without pydantic: one orjson parse and a few checks."""

from __future__ import annotations

from typing import Any

import orjson

FIELD = "input_text"


class InvalidRequest(ValueError):
    """A client mistake; `detail` says which field and why (answered as `status`, VALIDATION_ERROR)."""

    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def max_body_bytes(max_chars: int) -> int:
    """Largest body that can hold max_chars characters: a JSON-escaped astral char takes 12 bytes."""
    return 12 * max_chars + 1024


def check_body_size(content_length: str | None, max_chars: int) -> None:
    """Refuse a declared oversize body before reading it (413)."""
    limit = max_body_bytes(max_chars)
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise InvalidRequest(f"request body is {content_length} bytes; the limit is {limit}", status=413)


def json_type_name(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages clients can act on."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_embed_body(raw: bytes, max_chars: int) -> str:
    """The `input_text` of a JSON body `{"input_text": "..."}`, or InvalidRequest."""
    if not raw.strip():
        raise InvalidRequest(f'request body is empty; expected a JSON object like {{"{FIELD}": "some text"}}')
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f'request body must be a JSON object with "{FIELD}", got {json_type_name(data)}')
    if FIELD not in data:
        raise InvalidRequest(f"{FIELD}: field required")
    text = data[FIELD]
    if not isinstance(text, str):
        raise InvalidRequest(f"{FIELD}: must be a string, got {json_type_name(text)}")
    if not text.strip():
        raise InvalidRequest(f"{FIELD}: must not be empty or whitespace-only")
    if len(text) > max_chars:
        raise InvalidRequest(f"{FIELD}: must be at most {max_chars} characters, got {len(text)}")
    return text


def describe_validation_errors(errors: list[dict[str, Any]]) -> str:
    """One line from FastAPI/pydantic error dicts, e.g. 'limit: Input should be a valid integer'."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "request body"
        parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"

"""Request-body checks shared by both embedding endpoints, without pydantic: one orjson parse, a few checks.

Every client mistake is an `InvalidRequest` whose `detail` names the field and why.
"""

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


def max_body_bytes(max_chars: int, items: int = 1) -> int:
    """Largest body that can hold `items` texts of max_chars characters (a JSON-escaped astral
    character takes 12 bytes), plus room for the other fields."""
    return 12 * max_chars * items + 1024


def check_body_size(content_length: str | None, limit: int) -> None:
    """Refuse a declared oversize body before reading it (413)."""
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


def parse_json_object(raw: bytes, example: str) -> dict[str, Any]:
    """The body as a JSON object; `example` shows the expected shape in the error messages."""
    if not raw.strip():
        raise InvalidRequest(f"request body is empty; expected a JSON object like {example}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson also refuses invalid UTF-8 and lone surrogates: the text could not be encoded for Triton.
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"request body must be a JSON object like {example}, got {json_type_name(data)}")
    return data


def check_text(text: Any, where: str, max_chars: int) -> str:
    """A non-blank string of at most max_chars characters (characters, not bytes or tokens)."""
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}: must be a string, got {json_type_name(text)}")
    if not text.strip():
        raise InvalidRequest(f"{where}: must not be empty or whitespace-only")
    if len(text) > max_chars:
        raise InvalidRequest(f"{where}: must be at most {max_chars} characters, got {len(text)}")
    return text


def parse_embed_body(raw: bytes, max_chars: int) -> str:
    """The `input_text` of a `POST /v1/embed` body `{"input_text": "..."}`, or InvalidRequest."""
    data = parse_json_object(raw, f'{{"{FIELD}": "some text"}}')
    if FIELD not in data:
        raise InvalidRequest(f"{FIELD}: field required")
    return check_text(data[FIELD], FIELD, max_chars)


def describe_validation_errors(errors: list[dict[str, Any]]) -> str:
    """One line from FastAPI/pydantic error dicts, e.g. 'limit: Input should be a valid integer'."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "request body"
        parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"

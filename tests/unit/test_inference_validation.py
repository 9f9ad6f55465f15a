"""Request-body checks: every client mistake is an InvalidRequest naming the field and why."""

from __future__ import annotations

import pytest

from inference.adapter.validation import (
    InvalidRequest,
    check_body_size,
    describe_validation_errors,
    max_body_bytes,
    parse_embed_body,
)


def test_accepts_text_as_is() -> None:
    assert parse_embed_body(b'{"input_text": "  Hello  ", "extra": 1}', 100) == "  Hello  "


def test_accepts_exactly_max_chars_of_unicode() -> None:
    text = "é" * 10  # characters, not bytes, are counted
    assert parse_embed_body(f'{{"input_text": "{text}"}}'.encode(), 10) == text


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"", "request body is empty"),
        (b"  \n", "request body is empty"),
        (b"{oops", "request body is not valid JSON"),
        (b"\xff\xfe", "request body is not valid JSON"),
        (b'{"input_text": "caf\xe9"}', "not valid UTF-8"),  # latin-1 byte inside a JSON string
        (b'{"input_text": "\\ud800"}', "request body is not valid JSON"),  # lone surrogate
        (b'"just a string"', 'like {"input_text": "some text"}, got string'),
        (b"[]", "got array"),
        (b'{"text": "hi"}', "input_text: field required"),
        (b'{"input_text": 1.5}', "input_text: must be a string, got number"),
        (b'{"input_text": true}', "input_text: must be a string, got boolean"),
        (b'{"input_text": ["a"]}', "input_text: must be a string, got array"),
        (b'{"input_text": {"a": 1}}', "input_text: must be a string, got object"),
        (b'{"input_text": ""}', "input_text: must not be empty or whitespace-only"),
        (b'{"input_text": "\\u00a0\\t"}', "input_text: must not be empty or whitespace-only"),
        (b'{"input_text": "abcdef"}', "input_text: must be at most 5 characters, got 6"),
    ],
)
def test_rejects_with_a_readable_detail(raw: bytes, detail: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_embed_body(raw, 5)
    assert detail in info.value.detail
    assert info.value.status == 422


def test_describe_pydantic_errors_drops_the_location_kind() -> None:
    errors = [
        {"loc": ("body", "input_text"), "msg": "Field required"},
        {"loc": ("query", "limit"), "msg": "Input should be a valid integer"},
        {"loc": ("body",), "msg": "JSON decode error"},
    ]
    assert describe_validation_errors(errors) == (
        "input_text: Field required; limit: Input should be a valid integer; request body: JSON decode error"
    )
    assert describe_validation_errors([]) == "invalid request"


def test_body_limit_grows_with_items_and_oversize_is_413() -> None:
    assert max_body_bytes(10, items=4) > 4 * max_body_bytes(10) - 4 * 1024
    check_body_size(None, 100)
    check_body_size("100", 100)
    with pytest.raises(InvalidRequest) as info:
        check_body_size("101", 100)
    assert info.value.status == 413

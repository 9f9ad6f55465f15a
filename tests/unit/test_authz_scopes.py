"""Route groups, scopes and durations: the pure rules behind 403s and expiry flags."""

from __future__ import annotations

from datetime import timedelta

import pytest

from authz_service.durations import format_duration, parse_duration
from authz_service.scopes import allows, parse_scopes, route_group


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/v1/embed", "embed"),
        ("/v1/embeddings", "embed"),
        ("/v1/embed?x=1", "embed"),
        ("/v1/embed/", "embed"),
        ("/v1/detect", "detect"),
        ("/v1/detect/batch", "detect"),
        ("/v1/usage", "usage"),
        ("/auth/profile", "usage"),
        ("/v1/%65mbed", "embed"),  # the upstream would decode it: so do we
        ("/v1/embedx", None),
        ("/v1/other", None),
        ("/", None),
        ("", None),
    ],
)
def test_route_group_of_a_path(path: str, group: str | None) -> None:
    assert route_group(path) == group


def test_empty_scopes_allow_every_route_and_scoped_keys_fail_closed() -> None:
    assert allows(frozenset(), "/v1/embed")
    assert allows(frozenset(), "/v2/anything")
    embed_only = frozenset({"embed"})
    assert allows(embed_only, "/v1/embeddings")
    assert not allows(embed_only, "/v1/usage")
    assert not allows(embed_only, "/auth/profile")
    assert not allows(embed_only, "/v1/new-route-nobody-mapped")


def test_parse_scopes() -> None:
    assert parse_scopes("usage, embed") == ("embed", "usage")
    assert parse_scopes(["EMBED", "embed"]) == ("embed",)
    assert parse_scopes("") == ()
    assert parse_scopes(None) == ()
    with pytest.raises(ValueError, match="unknown scope"):
        parse_scopes("embed,admin")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("24h", timedelta(hours=24)), ("90m", timedelta(minutes=90)),
     ("45s", timedelta(seconds=45)), ("2w", timedelta(weeks=2)), ("10", timedelta(seconds=10)),
     ("0", timedelta(0)), (" 5H ", timedelta(hours=5))],
)  # fmt: skip
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "d", "-1d", "1.5h", "3x", "1d2h", "99999w"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for text in ("30d", "2w", "90m", "45s", "36h"):
        assert format_duration(parse_duration(text)) == text

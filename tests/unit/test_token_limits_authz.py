"""Token limits on the authz side (pure): plans file fields, a key's effective limits, the ext_authz
metadata Envoy's token descriptors read, fused mode's token check descriptor, the CLI flags."""

from __future__ import annotations

import pytest
from google.protobuf.json_format import MessageToDict

from authz_service import fused
from authz_service.grants import grant_for
from authz_service.keys import cli
from authz_service.plans import PlansError, builtin_plans, parse_plans
from ratelimit_service import tokens
from tests.unit.test_authz_decisions import record

PLANS = parse_plans(
    {"plans": {"free": {}, "metered": {"token_limit_per_minute": 1000, "token_limit_per_day": 50_000}}},
    60,
    1000,
)


def metadata(**changes: object) -> dict:
    return MessageToDict(grant_for(record(**changes), PLANS).ok.dynamic_metadata)


def test_plans_file_token_limits_and_the_keys_own_beat_them() -> None:
    assert PLANS.limits_for("free").tokens_per_minute is None  # none unless set
    metered = PLANS.key_limits(record(plan="metered", token_limit_per_day=7))
    assert (metered.tokens_per_minute, metered.tokens_per_day) == (1000, 7)
    assert builtin_plans(60, 1000).limits_for("pro").tokens_per_day is None
    with pytest.raises(PlansError, match=r"plans\.free\.token_limit_per_minute: must be a positive"):
        parse_plans({"plans": {"free": {"token_limit_per_minute": 0}}}, 60, 1000)


def test_only_keys_with_token_limits_get_the_token_limits_metadata() -> None:
    assert tokens.LIMITS_KEY not in metadata()
    assert metadata(plan="metered")[tokens.LIMITS_KEY] == "minute=1000,day=50000"
    assert metadata(token_limit_per_minute=5)[tokens.LIMITS_KEY] == "minute=5"


def test_fused_mode_adds_the_token_check_descriptor() -> None:
    plain = fused.descriptors("v1", grant_for(record(), PLANS))
    assert len(plain) == 1
    _, check = fused.descriptors("v1", grant_for(record(token_limit_per_day=9), PLANS))
    assert check.hits == 0
    assert check.entries == (*tokens.entries("key_0123456789abcdef"), (tokens.LIMITS_KEY, "day=9"))


def test_cli_generate_takes_token_limits() -> None:
    flags = ["generate", "--token-limit-minute", "100", "--token-limit-day", "9"]
    args = cli.build_parser().parse_args(flags)
    assert (args.token_limit_minute, args.token_limit_day) == (100, 9)
    assert cli.build_parser().parse_args(["generate"]).token_limit_minute is None

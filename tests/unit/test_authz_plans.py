"""Plans: built-in defaults, YAML files, and the effective limits of a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz_service.plans import Limits, PlansError, builtin_plans, load_plans, parse_plans


def test_builtin_free_plan_follows_the_service_defaults() -> None:
    plans = builtin_plans(3, 100)
    assert plans.default_plan == "free"
    assert plans.limits_for("free") == Limits(3, 100)
    assert "pro" in plans and plans.limits_for("pro").per_minute > 3


def test_a_key_limit_overrides_its_plan_and_unknown_plans_fall_back() -> None:
    plans = builtin_plans(60, 1000)
    assert plans.limits_for("free", 70, None) == Limits(70, 1000)
    assert plans.limits_for("free", None, 5) == Limits(60, 5)
    assert plans.limits_for("retired-plan") == Limits(60, 1000)


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "plans.yaml"
    path.write_text("default_plan: starter\nplans:\n  starter: {}\n  team: {rate_limit_minute: 500}\n")
    plans = load_plans(path, 60, 1000)
    assert plans.names() == ["starter", "team"]
    assert plans.default_plan == "starter"
    assert plans.limits_for("starter") == Limits(60, 1000)
    assert plans.limits_for("team") == Limits(500, 1000)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "non-empty 'plans'"),
        ({"plans": {}}, "non-empty 'plans'"),
        ({"plans": {"free": {}}, "colour": 1}, "unknown key"),
        ({"plans": {"Free!": {}}}, "plans.Free!: plan names"),
        ({"plans": {"free": {"rate_limit_day": 1}}}, "only rate_limit_minute"),
        ({"plans": {"free": {"rate_limit_minute": 0}}}, "plans.free.rate_limit_minute: must be a positive"),
        ({"plans": {"free": {"rate_limit_hour": "10"}}}, "plans.free.rate_limit_hour"),
        ({"plans": {"pro": {}}}, "default_plan 'free'"),
    ],
)
def test_bad_documents_name_the_file_and_key(document: object, message: str) -> None:
    with pytest.raises(PlansError, match=r"plans\.yaml") as error:
        parse_plans(document, 60, 1000, "plans.yaml")
    assert message in str(error.value)


def test_unreadable_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(PlansError, match="cannot read"):
        load_plans(tmp_path / "missing.yaml", 60, 1000)
    bad = tmp_path / "bad.yaml"
    bad.write_text("plans: [unclosed")
    with pytest.raises(PlansError, match="invalid YAML"):
        load_plans(bad, 60, 1000)

"""Who may register which keys, and how register bodies are validated (no I/O)."""

from __future__ import annotations

import pydantic
import pytest

from authz_service.http.app import check_open_request, registrar
from authz_service.http.errors import ApiError
from authz_service.http.schemas import RegisterRequest
from authz_service.http.settings import HttpSettings
from authz_service.plans import builtin_plans

PLANS = builtin_plans(60, 1000)


@pytest.mark.parametrize(
    ("settings", "token", "outcome"),
    [
        (HttpSettings(admin_token="s3cret"), "s3cret", "admin"),
        (HttpSettings(admin_token="s3cret"), "wrong", 401),
        (HttpSettings(admin_token="s3cret"), None, 401),
        (HttpSettings(admin_token="s3cret", open_registration=True), None, "open"),
        (HttpSettings(admin_token="s3cret", open_registration=True), "wrong", 401),
        (HttpSettings(open_registration=True), None, "open"),
        (HttpSettings(open_registration=True), "anything", 401),  # no admin token configured
        (HttpSettings(), None, 403),  # neither: registration is off
        (HttpSettings(), "", 401),
    ],
)
def test_who_may_register(settings: HttpSettings, token: str | None, outcome: str | int) -> None:
    if isinstance(outcome, str):
        assert registrar(settings, token) == outcome
    else:
        with pytest.raises(ApiError) as error:
            registrar(settings, token)
        assert error.value.status == outcome


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a", "plan": "pro"},
        {"name": "a", "rate_limit_per_minute": 61},
        {"name": "a", "rate_limit_per_hour": 1001},
    ],
)
def test_open_registration_cannot_raise_limits_or_pick_plans(body: dict) -> None:
    with pytest.raises(ApiError) as error:
        check_open_request(RegisterRequest(**body), PLANS)
    assert error.value.status == 403 and error.value.code == "PERMISSION_DENIED"


def test_open_registration_may_lower_limits() -> None:
    check_open_request(RegisterRequest(name="a", plan="free", rate_limit_per_minute=10), PLANS)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x\ny"},
        {"name": "a", "rate_limit_per_minute": 0},
        {"name": "a", "scopes": ["root"]},
        {"name": "a", "expires_in": "later"},
        {"name": "a", "environment": "prod"},
        {"name": "a", "colour": "red"},
    ],
)
def test_invalid_register_bodies(body: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        RegisterRequest.model_validate(body)


def test_register_body_normalises_scopes() -> None:
    assert RegisterRequest(name="a", scopes=["usage", "EMBED"]).scopes == ["embed", "usage"]

"""Fused mode without processes: the Check answer equals what the standard path's two calls give.

Each step runs the same request through the fused authz service and through the standard pair
(authz, then ratelimit_service's own servicer with the descriptor Envoy builds from the authz
metadata), on two in-memory stores that share one fake clock.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2

from authz_service import fused
from authz_service.cache import KeyCache
from authz_service.grants import grant_for
from authz_service.service import AuthorizationService
from ratelimit_service import responses, tokens
from ratelimit_service.config import DEFAULT_CONFIG, RateLimitConfig, load_config, parse_text
from ratelimit_service.config.model import with_unit_limits
from ratelimit_service.limiter import Limiter
from ratelimit_service.service import RateLimitService
from ratelimit_service.store import MemoryStore, store_from_url
from stack import envoy as launcher
from tests.procs import free_port
from tests.ratelimit_fixtures import rl_request
from tests.unit.test_authz_decisions import PLANS, DictStore, add, record, request

render = launcher.renderer()
CONFIG = with_unit_limits(load_config(DEFAULT_CONFIG), {"minute": 2, "hour": 1000})
(DENY_DOMAIN,) = parse_text(
    """
domain: gateway
failure_mode: deny
descriptors:
  - key: route
    value: v1
    descriptors:
      - key: plan
        descriptors:
          - key: api_key
            rate_limit: {unit: minute, requests_per_unit: 5}
""",
    "deny.yaml",
)
DENY = RateLimitConfig({"gateway": DENY_DOMAIN})
NOW_MS = 1_700_000_030_000


def manager(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def route(config: dict, match: dict) -> dict:
    return next(
        r for r in manager(config)["route_config"]["virtual_hosts"][0]["routes"] if r["match"] == match
    )


# The /v1/ route of unsigned requests, and its twin for signed ones (ext_authz also gets the body).
UNSIGNED_V1 = {
    "prefix": "/v1/",
    "headers": [{"name": "x-signature", "present_match": True, "invert_match": True}],
}
SIGNED_V1 = {"prefix": "/v1/", "headers": [{"name": "x-signature", "present_match": True}]}


def rendered(**values: str) -> dict:
    return yaml.safe_load(render.render(render.values_from_env(values)))


class Pair:
    """The fused service and the standard pair, on stores at the same fake time."""

    def __init__(self, config=CONFIG) -> None:  # type: ignore[no-untyped-def]
        self.now = NOW_MS
        clock = lambda: self.now  # noqa: E731
        self.keys = DictStore()
        self.fused = AuthorizationService(KeyCache(size=100, ttl=60), PLANS)
        self.fused.store = self.keys
        self.fused.limits = fused.FusedLimits(Limiter(config, MemoryStore(clock)))
        self.authz = AuthorizationService(KeyCache(size=100, ttl=60), PLANS)
        self.authz.store = self.keys
        self.ratelimit = RateLimitService(Limiter(config, MemoryStore(clock)))

    async def fused_check(self, key: str, route: str | None = "v1") -> CheckResponse:
        message = request({"authorization": f"Bearer {key}"})
        if route is not None:
            message.attributes.context_extensions[fused.ROUTE_EXTENSION] = route
        return await self.fused.Check(message, None)  # type: ignore[arg-type]

    async def standard(self, key: str) -> tuple[CheckResponse, RateLimitResponse]:
        """ext_authz, then ShouldRateLimit with the descriptor the template's actions build."""
        check = await self.authz.Check(request({"authorization": f"Bearer {key}"}), None)  # type: ignore[arg-type]
        meta = MessageToDict(check.dynamic_metadata)
        entries = [("route", "v1"), ("plan", meta.get("plan", "free")), ("api_key", meta["key_id"])]
        entries += [(f"rate_limit_{u}", str(int(meta[f"key_rate_limit_{u}"])))
                    for u in ("minute", "hour") if f"key_rate_limit_{u}" in meta]  # fmt: skip
        return check, await self.ratelimit.ShouldRateLimit(rl_request("gateway", entries), None)  # type: ignore[arg-type]


def wrapped(limited: RateLimitResponse) -> list[HeaderValueOption]:
    return [HeaderValueOption(header=h) for h in limited.response_headers_to_add]


@pytest.mark.parametrize("own", [{}, {"rate_limit_minute": 1, "rate_limit_hour": 3}])
async def test_every_answer_is_the_standard_paths(own: dict) -> None:
    pair = Pair()
    key = add(pair.keys, **own)
    for step in range(4):
        pair.now += 7_000 * step
        mine = await pair.fused_check(key)
        check, limited = await pair.standard(key)
        if limited.overall_code == RateLimitResponse.OK:
            assert mine.status.code == code_pb2.OK
            assert list(mine.ok_response.response_headers_to_add) == wrapped(limited)
            mine.ok_response.ClearField("response_headers_to_add")
            assert mine == check  # the rest is the grant's prebuilt OK
        else:
            denial = mine.denied_response
            assert mine.status.code == code_pb2.RESOURCE_EXHAUSTED and denial.status.code == 429
            assert list(denial.headers) == [*wrapped(limited), fused.RATELIMITED]
            assert denial.body.encode() == limited.raw_body
    assert json.loads(denial.body)["limit"] == own.get("rate_limit_minute", 2)


async def test_unmarked_routes_and_denied_keys_are_not_charged() -> None:
    pair = Pair()
    key = add(pair.keys)
    revoked = add(pair.keys, id="key_revoked", revoked_at=record().created_at)
    grant = await pair.fused_check(key, route=None)
    assert grant.status.code == code_pb2.OK and not grant.ok_response.response_headers_to_add
    assert (await pair.fused_check(revoked)).denied_response.status.code == 401
    limiter = pair.fused.limits.limiter  # type: ignore[union-attr]
    for key_id in ("key_0123456789abcdef", "key_revoked"):
        states = await limiter.usage(
            "gateway", fused.descriptors("v1", grant_for(record(id=key_id), PLANS))[0].entries
        )
        assert [s.used() for s in states] == [0, 0]


def test_descriptor_entries_and_overrides() -> None:
    (descriptor,) = fused.descriptors("v1", grant_for(record(plan="pro", rate_limit_hour=9), PLANS))
    assert descriptor.entries == (("route", "v1"), ("plan", "pro"), ("api_key", "key_0123456789abcdef"))
    assert descriptor.overrides == {"hour": 9}


def test_the_template_builds_the_descriptor_fused_mode_builds() -> None:
    """If the template's /v1/ actions change, fused.descriptors must change with them."""
    config = rendered()
    policies = route(config, UNSIGNED_V1)["typed_per_filter_config"][render.RATELIMIT]["rate_limits"]
    assert route(config, SIGNED_V1)["route"] == route(config, UNSIGNED_V1)["route"]  # one action
    signed = route(config, SIGNED_V1)["typed_per_filter_config"][render.RATELIMIT]["rate_limits"]
    assert signed == policies  # the same limits
    actions = policies[0]["actions"]
    assert actions[0] == {"generic_key": {"descriptor_key": "route", "descriptor_value": "v1"}}
    assert (
        actions[1]["metadata"]["descriptor_key"] == "plan"
        and actions[1]["metadata"]["default_value"] == "free"
    )
    assert actions[1]["metadata"]["metadata_key"]["path"] == [{"key": "plan"}]
    assert actions[2] == {"request_headers": {"header_name": "x-gateway-key-id", "descriptor_key": "api_key"}}
    overrides = [a["extension"]["typed_config"] for a in actions[3:]]
    assert [o["descriptor_key"] for o in overrides] == ["rate_limit_minute", "rate_limit_hour"]
    assert all("key_rate_limit_" in o["text"] for o in overrides) and len(actions) == 5
    # The token check and charge: fused.descriptors builds the check (tokens.entries + token_limits).
    check, charge = policies[1:]
    assert check["actions"] == charge["actions"] and len(policies) == 3
    token_actions = check["actions"]
    assert token_actions[0] == {
        "generic_key": {"descriptor_key": tokens.ROUTE_KEY, "descriptor_value": tokens.ROUTE}
    }
    assert token_actions[1]["request_headers"]["descriptor_key"] == "api_key"
    assert token_actions[2]["metadata"]["descriptor_key"] == tokens.LIMITS_KEY
    assert "default_value" not in token_actions[2]["metadata"]  # no limits: no descriptor
    assert check["hits_addend"] == {"number": 0} and not check.get("apply_on_stream_done")
    assert (
        charge["hits_addend"] == {"format": f"%RESP({tokens.TOKENS_HEADER})%"}
        and charge["apply_on_stream_done"]
    )
    limiter = next(f for f in manager(config)["http_filters"] if f["name"] == render.RATELIMIT)
    assert limiter["typed_config"]["domain"] == fused.FusedLimits(Limiter(CONFIG, MemoryStore())).domain


def test_fused_render(tmp_path: Path) -> None:
    config = rendered(fused_limits="true")
    # The ratelimit filter stays for the token charges after the response, sent to the authz service.
    limiter = next(f for f in manager(config)["http_filters"] if f["name"] == render.RATELIMIT)
    assert (
        limiter["typed_config"]["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "authz"
    )
    assert "ratelimit" not in [c["name"] for c in config["static_resources"]["clusters"]]
    assert "ratelimit_http" in [c["name"] for c in config["static_resources"]["clusters"]]  # /v1/usage
    v1 = route(config, UNSIGNED_V1)
    left = v1["typed_per_filter_config"][render.RATELIMIT]["rate_limits"]
    assert [p.get("apply_on_stream_done") for p in left] == [True]  # only the charge
    settings = v1["typed_per_filter_config"][render.EXT_AUTHZ]["check_settings"]
    assert settings == {"context_extensions": {fused.ROUTE_EXTENSION: "v1"}}
    # The signed route is charged the same way and still sends the body to authz.
    signed = route(config, SIGNED_V1)["typed_per_filter_config"][render.EXT_AUTHZ]["check_settings"]
    assert signed["context_extensions"] == settings["context_extensions"]
    assert signed["with_request_body"]["pack_as_bytes"] is True
    assert "typed_per_filter_config" not in route(config, {"path": "/v1/usage"})
    authz = next(f for f in manager(config)["http_filters"] if f["name"] == render.EXT_AUTHZ)
    assert (
        "reset" not in authz["typed_config"]["grpc_service"]["retry_policy"]["retry_on"]
    )  # no double charge
    assert rendered(fused_limits="false") == rendered()
    path = tmp_path / "fused.yaml"
    path.write_text(render.render(render.values_from_env({"fused_limits": "1"})))
    launcher.validate(path)


@pytest.mark.parametrize(("config", "expected"), [(CONFIG, "grant"), (DENY, "503")])
async def test_store_down_follows_the_failure_mode(config, expected: str) -> None:  # type: ignore[no-untyped-def]
    # A real Redis client on a port nobody listens on: connection refused.
    limits = fused.FusedLimits(Limiter(config, store_from_url(f"redis://127.0.0.1:{free_port()}/0", 0.1)))
    grant = grant_for(record(), PLANS)
    message = CheckRequest()
    message.attributes.context_extensions[fused.ROUTE_EXTENSION] = "v1"
    answer = await limits.check(message, grant)
    await limits.close()
    if expected == "grant":
        assert answer is grant.ok
    else:
        assert answer.denied_response == fused.STORE_DOWN.denied_response
        assert answer.denied_response.status.code == 503
        assert answer.denied_response.body.encode() == responses.STORE_UNAVAILABLE.raw_body
        # The key id too, for the usage log (responses.with_key_id).
        assert MessageToDict(answer.dynamic_metadata) == {"store": "unavailable", "key_id": grant.key_id}


async def test_remembered_plans_follow_reloads_and_changed_keys() -> None:
    limiter = Limiter(CONFIG, MemoryStore())
    limits = fused.FusedLimits(limiter)
    message = CheckRequest()
    message.attributes.context_extensions[fused.ROUTE_EXTENSION] = "v1"

    async def minute_limit(grant) -> str:  # type: ignore[no-untyped-def]
        answer = await limits.check(message, grant)
        headers = {o.header.key: o.header.value for o in answer.ok_response.response_headers_to_add}
        return headers["x-ratelimit-limit-minute"]

    grant = grant_for(record(), PLANS)
    assert [await minute_limit(grant), await minute_limit(grant)] == ["2", "2"]
    limiter.set_config(with_unit_limits(CONFIG, {"minute": 40}))  # a hot reload
    assert await minute_limit(grant) == "40"
    assert await minute_limit(grant_for(record(rate_limit_minute=30), PLANS)) == "30"  # key changed


@pytest.mark.parametrize(("value", "fused_authz"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_the_stack_runs_authz_fused_with_the_gateway(monkeypatch, value: str, fused_authz: bool) -> None:  # type: ignore[no-untyped-def]
    from stack.__main__ import stack_env

    monkeypatch.setenv("GATEWAY_FUSED_LIMITS", value)
    monkeypatch.delenv("AUTHZ_FUSED_LIMITS", raising=False)
    env, names = stack_env()
    assert (env.get("AUTHZ_FUSED_LIMITS") == "1") is fused_authz
    assert "ratelimit" in names  # still serves GET /v1/usage

"""The usage log and usage routes in the rendered Envoy bootstrap (GATEWAY_USAGE_LOG)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from stack.envoy import renderer

render = renderer()


def bootstrap(**values: str) -> dict[str, Any]:
    return yaml.safe_load(render.render(render.values_from_env(values)))


def loggers(config: dict[str, Any]) -> list[dict[str, Any]]:
    return render.public_manager(config).get("access_log", [])


def usage_loggers(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [log for log in loggers(config) if log["name"] == "envoy.access_loggers.file"]


@pytest.mark.parametrize("mode", ["on", "compact", "off"])
def test_usage_log_is_a_second_log_of_granted_requests(mode: str) -> None:
    config = bootstrap(usage_log_path="/var/log/usage.jsonl", access_log=mode)
    [usage] = usage_loggers(config)
    assert usage["typed_config"]["path"] == "/var/log/usage.jsonl"
    fields = usage["typed_config"]["log_format"]["json_format"]
    # The key id from ext_authz's metadata, never from a header a client could send.
    assert fields["key_id"] == "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:key_id)%"
    assert fields["tokens"] == "%RESP(X-GATEWAY-TOKENS)%" and fields["flags"] == "%RESPONSE_FLAGS%"
    matcher = usage["filter"]["metadata_filter"]
    assert (
        matcher["matcher"]["filter"] == "envoy.filters.http.ext_authz"
        and not matcher["match_if_key_not_found"]
    )
    assert len(loggers(config)) == (1 if mode == "off" else 2)


@pytest.mark.parametrize("path", ["", "off"])
def test_no_usage_log_unless_asked(path: str) -> None:
    assert usage_loggers(bootstrap(usage_log_path=path)) == []


def test_usage_routes_cost_no_quota_and_export_skips_ext_authz() -> None:
    routes = render.public_manager(bootstrap())["route_config"]["virtual_hosts"][-1]["routes"]
    paths = [r["match"].get("path") or r["match"].get("prefix") for r in routes]
    history, export = routes[paths.index("/v1/usage/history")], routes[paths.index("/admin/usage")]
    assert paths.index("/v1/usage/history") < paths.index("/v1/")
    assert history["route"]["cluster"] == "usage_http" and "rate_limits" not in history["route"]
    assert "typed_per_filter_config" not in history  # ext_authz on: the key is needed
    assert export["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] is True
    assert "x-gateway-key-id" in export["request_headers_to_remove"]


def stream_done_policies(config: dict[str, Any]) -> int:
    routes = [r for h in render.public_manager(config)["route_config"]["virtual_hosts"] for r in h["routes"]]
    limits = [r.get("typed_per_filter_config", {}).get(render.RATELIMIT) or {} for r in routes]
    return sum(bool(p.get("apply_on_stream_done")) for lim in limits for p in lim.get("rate_limits", []))


def test_token_charge_usage_drops_envoys_charge_after_the_response() -> None:
    envoy_charges = bootstrap(usage_log_path="/var/log/usage.jsonl")
    assert stream_done_policies(envoy_charges) == 2  # the plain and the signed /v1/ route
    batched = bootstrap(usage_log_path="/var/log/usage.jsonl", token_charge="usage")
    assert stream_done_policies(batched) == 0
    [usage] = usage_loggers(batched)
    fields = usage["typed_config"]["log_format"]["json_format"]
    assert fields["token_limits"] == "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:token_limits)%"
    # Fused mode keeps its ratelimit filter only for those charges: with none, the filter goes.
    fused = bootstrap(usage_log_path="/var/log/usage.jsonl", token_charge="usage", fused_limits="true")
    filters = [f["name"] for f in render.public_manager(fused)["http_filters"]]
    assert render.RATELIMIT not in filters and stream_done_policies(fused) == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"token_charge": "usage"}, "set GATEWAY_USAGE_LOG"),
        ({"token_charge": "redis", "usage_log_path": "/x.jsonl"}, "must be envoy or usage"),
    ],
)
def test_token_charge_settings_that_cannot_work_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap(**values)

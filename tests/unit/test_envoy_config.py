"""The Envoy template renders to a bootstrap the real Envoy binary accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from stack import envoy as launcher

render = launcher.renderer()


def rendered(**overrides: str) -> dict:
    return yaml.safe_load(render.render(render.values_from_env(overrides)))


def http_filters(config: dict) -> list[str]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return [f["name"] for f in manager["http_filters"]]


def test_filter_order_is_cors_authz_ratelimit_then_body_limit_and_router() -> None:
    assert http_filters(rendered()) == [
        "envoy.filters.http.cors",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.buffer",
        "envoy.filters.http.router",
    ]


def test_ports_come_from_values() -> None:
    config = rendered(listen_port="18000", admin_port="19901", authz_port="19001")
    assert config["admin"]["address"]["socket_address"]["port_value"] == 19901
    assert config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] == 18000
    authz = next(c for c in config["static_resources"]["clusters"] if c["name"] == "authz")
    endpoint = authz["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == 19001


def test_cors_origins() -> None:
    assert json.loads(render.cors_origin_matchers("*")) == [{"safe_regex": {"regex": ".*"}}]
    assert json.loads(render.cors_origin_matchers("https://a.example, https://b.example")) == [
        {"exact": "https://a.example"},
        {"exact": "https://b.example"},
    ]


def test_unknown_values_are_refused() -> None:
    with pytest.raises(KeyError, match="unknown template values"):
        render.render({**render.values_from_env(), "listen_prot": "1"})


def test_envoy_validates_the_rendered_config(tmp_path: Path) -> None:
    config = launcher.write_config(tmp_path / "envoy.yaml", {"cors_origins": "https://app.example"})
    result = subprocess.run(
        [launcher.envoy_binary(), "--mode", "validate", "-c", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def test_sidecar_retries_never_cut_a_call_short() -> None:
    """Envoy turns a grpc_service retry policy's max_interval into the per-try timeout. At 50 ms
    (as it once was) every sidecar call slower than that on a busy machine was reset: authz
    answered 503 and the rate limiter let the request through unlimited."""
    manager = rendered()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = {f["name"]: f["typed_config"] for f in manager["http_filters"]}
    authz, ratelimit = filters["envoy.filters.http.ext_authz"], filters["envoy.filters.http.ratelimit"]
    calls = [
        (authz["grpc_service"], authz["grpc_service"]["timeout"]),
        (ratelimit["rate_limit_service"]["grpc_service"], ratelimit["timeout"]),
    ]
    for service, timeout in calls:
        per_try = service["retry_policy"]["retry_back_off"]["max_interval"]
        assert _seconds(per_try) >= _seconds(timeout), (per_try, timeout)


def test_access_log_is_on_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    def manager(config: dict) -> dict:
        return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]

    assert manager(rendered())["access_log"][0]["name"] == "envoy.access_loggers.stdout"
    quiet = rendered(access_log="off")
    assert "access_log" not in manager(quiet)
    assert http_filters(quiet) == http_filters(rendered())  # nothing else changes
    config = tmp_path / "envoy.yaml"
    config.write_text(render.render(render.values_from_env({"access_log": "off"})))
    launcher.validate(config)


def test_compact_access_log_is_one_short_text_line_and_bad_modes_are_refused(tmp_path: Path) -> None:
    def log_format(config: dict) -> dict:
        manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        return manager["access_log"][0]["typed_config"]["log_format"]

    compact = log_format(rendered(access_log="compact"))
    assert "json_format" not in compact
    assert compact["text_format_source"]["inline_string"].startswith("%START_TIME(%H:%M:%S)% %REQ(:METHOD)%")
    config = tmp_path / "envoy.yaml"
    config.write_text(render.render(render.values_from_env({"access_log": "compact"})))
    launcher.validate(config)
    with pytest.raises(ValueError, match="GATEWAY_ACCESS_LOG must be on, compact or off"):
        rendered(access_log="loud")

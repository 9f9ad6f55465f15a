"""Pure helpers behind /health and the adapter's options."""

from __future__ import annotations

import re

import pytest

from inference.adapter.health import fetch_queue_size, package_version, parse_pending_requests
from inference.adapter.settings import AdapterSettings, build_parser, parse_settings
from inference.adapter.triton_client import device_from_config

METRICS = """\
# HELP nv_inference_pending_request_count Instantaneous number of pending requests.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="embedder",version="1"} 3
nv_inference_pending_request_count{model="other",version="2"} 4
# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="embedder",version="1"} 120
"""


def test_pending_requests_are_summed_over_models() -> None:
    assert parse_pending_requests(METRICS) == 7


def test_pending_requests_absent_is_zero() -> None:
    assert parse_pending_requests("# no metrics yet\n") == 0


def test_unreachable_metrics_give_none() -> None:
    assert fetch_queue_size("http://127.0.0.1:9/metrics", timeout_s=0.5) is None


@pytest.mark.parametrize(
    ("config", "device"),
    [
        ({"instance_group": [{"kind": "KIND_CPU", "count": 1}]}, "cpu"),
        ({"instance_group": [{"kind": "KIND_GPU", "count": 1, "gpus": [1]}]}, "cuda:1"),
        ({"instance_group": [{"kind": "KIND_GPU", "count": 1}]}, "cuda:0"),
        ({"instance_group": [{"kind": "KIND_MODEL"}]}, "model"),
        ({}, "cpu"),
    ],
)
def test_device_from_instance_group(config: dict, device: str) -> None:
    assert device_from_config(config) == device


def test_version_comes_from_the_project() -> None:
    assert package_version() == "0.1.0"


def test_settings_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTER_PORT", "9100")
    monkeypatch.setenv("TRITON_GRPC_PORT", "9111")
    monkeypatch.delenv("TRITON_GRPC_URL", raising=False)
    settings = parse_settings(["--max-input-chars", "100"])
    assert settings.port == 9100
    assert settings.triton_grpc_url == "127.0.0.1:9111"
    assert settings.max_input_chars == 100
    assert parse_settings(["--triton-grpc-url", "10.0.0.1:1"]).triton_grpc_url == "10.0.0.1:1"


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for action in build_parser()._actions:
        for env in re.findall(r"env (\w+)", action.help or ""):
            monkeypatch.delenv(env, raising=False)
    monkeypatch.delenv("TRITON_GRPC_PORT", raising=False)
    monkeypatch.delenv("TRITON_METRICS_PORT", raising=False)
    assert parse_settings([]) == AdapterSettings()

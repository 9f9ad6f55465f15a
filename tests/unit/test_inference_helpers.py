"""Pure helpers behind /health and the adapter's options."""

from __future__ import annotations

import re

import pytest

from inference.adapter.__main__ import fastest
from inference.adapter.health import fetch_queue_size, health_body, package_version, parse_pending_requests
from inference.adapter.settings import AdapterSettings, build_parser, parse_settings
from inference.adapter.triton_client import ModelInfo, chunks, device_from_config, info_from_config

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


def test_model_info_from_config() -> None:
    config = {
        "max_batch_size": 64,
        "instance_group": [{"kind": "KIND_GPU", "count": 1, "gpus": [0]}],
        "output": [{"name": "TOKENS", "dims": ["1"]}, {"name": "EMBEDDING", "dims": ["384"]}],
    }
    assert info_from_config(config) == ModelInfo(device="cuda:0", max_batch_size=64, dim=384)
    assert info_from_config({}) == ModelInfo(device="cpu", max_batch_size=0, dim=0)


def test_chunks_cover_the_range_in_order() -> None:
    assert chunks(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunks(3, 64) == [(0, 3)]
    assert chunks(2, 0) == [(0, 1), (1, 2)]  # a model without batching takes one text per request


def test_health_body_is_503_and_degraded_when_not_ready() -> None:
    status, body = health_body(False, "1.0", "m", None, None, 0)
    assert status == 503
    service = {
        "status": "unavailable",
        "model": "m",
        "device": "unknown",
        "queue_size": 0,
        "inflight_batches": 0,
    }
    assert body == {"status": "degraded", "gateway_version": "1.0", "inference_service": service}
    status, body = health_body(True, "1.0", "m", "cpu", 5, 2)
    assert status == 200 and body["status"] == "healthy"
    assert body["inference_service"] == {
        "status": "healthy", "model": "m", "device": "cpu", "queue_size": 5, "inflight_batches": 2,
    }  # fmt: skip


def test_version_comes_from_the_project() -> None:
    assert package_version() == "0.1.0"


def test_settings_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTER_PORT", "9100")
    monkeypatch.setenv("TRITON_GRPC_PORT", "9111")
    monkeypatch.delenv("TRITON_GRPC_URL", raising=False)
    settings = parse_settings(["--max-input-chars", "100", "--max-inputs", "8"])
    assert settings.port == 9100
    assert settings.max_inputs == 8
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


def test_model_names_clients_may_send() -> None:
    assert AdapterSettings().model_names == (
        "sentence-transformers/all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2",
        "embedder",
    )


def test_bad_setting_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_settings(["--max-inputs", "0"])
    assert info.value.code == 2
    assert "--max-inputs: must be a positive integer" in capsys.readouterr().err


def test_uvicorn_gets_the_fast_loop_and_parser_when_installed() -> None:
    assert fastest("uvloop", "asyncio") == "uvloop"  # requirements.txt installs both
    assert fastest("httptools", "h11") == "httptools"
    assert fastest("no_such_module_here", "h11") == "h11"

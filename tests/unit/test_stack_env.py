"""`make run`'s environment and flags: the embedded Valkey over its unix socket, the seed's options."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import ready
from stack.__main__ import parse_args, stack_env
from stack.redis import MAX_SOCKET_PATH, socket_url


def test_the_embedded_redis_is_used_over_a_unix_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    env, names = stack_env()
    assert "redis" in names
    assert env["REDIS_URL"] == f"unix://{env['EMBEDDED_REDIS_SOCKET']}?db=0"


def test_a_given_redis_url_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://10.0.0.5:6379/2")
    monkeypatch.delenv("EMBEDDED_REDIS_SOCKET", raising=False)
    env, names = stack_env()
    assert env["REDIS_URL"] == "redis://10.0.0.5:6379/2"
    assert "redis" not in names and "EMBEDDED_REDIS_SOCKET" not in env


def test_a_socket_path_too_long_for_sockaddr_un_falls_back_to_tcp() -> None:
    assert socket_url(Path("/tmp/v.sock")) == "unix:///tmp/v.sock?db=0"
    assert socket_url(Path("/" + "d" * MAX_SOCKET_PATH) / "valkey.sock") is None


def test_the_seeds_flags_set_the_variables_the_parts_read() -> None:
    chosen = parse_args(
        ["--host", "0.0.0.0", "--port", "8080", "--rate-limit-minute", "10", "--rate-limit-hour", "500",
         "--cors-origins", "https://app.example", "--inference-url", "http://10.0.0.7:8001"]
    )  # fmt: skip
    assert chosen == {
        "GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": "8080", "RATE_LIMIT_MINUTE": "10",
        "RATE_LIMIT_HOUR": "500", "CORS_ORIGINS": "https://app.example", "INFERENCE_URL": "http://10.0.0.7:8001",
    }  # fmt: skip
    assert parse_args([]) == {}  # nothing given: the environment (or the defaults) decide


@pytest.mark.parametrize(
    "args",
    [["--port", "http"], ["--rate-limit-minute", "0"], ["--inference-url", "10.0.0.7:8001"], ["--nope"]],
)
def test_bad_flags_are_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(args)
    assert exit_.value.code == 2 and "error:" in capsys.readouterr().err


def test_an_existing_inference_adapter_replaces_triton_and_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_URL", "http://127.0.0.1:18001")
    env, names = stack_env()
    assert "triton" not in names and "adapter" not in names and "envoy" in names
    assert env["INFERENCE_ENDPOINTS"] == "127.0.0.1:18001"
    waits = ready.checks()
    assert "inference adapter" in waits and not any(name.startswith(("triton", "adapter")) for name in waits)


def test_the_banner_names_the_gateway_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "8443")
    monkeypatch.setenv("GATEWAY_TLS_CERT", "/certs/cert.pem")
    assert ready.gateway_url() == "https://localhost:8443"
    assert "https://localhost:8443/v1/embed" in ready.banner(3.0)


def test_make_run_logs_one_short_line_per_request_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GATEWAY_ACCESS_LOG", raising=False)
    assert stack_env()[0]["GATEWAY_ACCESS_LOG"] == "compact"
    monkeypatch.setenv("GATEWAY_ACCESS_LOG", "on")
    assert stack_env()[0]["GATEWAY_ACCESS_LOG"] == "on"

"""`make run`'s environment: the embedded Valkey is reached over its unix socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.__main__ import stack_env
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

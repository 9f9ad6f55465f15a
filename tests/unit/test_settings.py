"""common.settings: flags with environment fallbacks; a bad value is a one-line error."""

from __future__ import annotations

import argparse
import logging

import pytest

from common.logs import one_line_errors
from common.settings import add_option, env_default, positive_int


def test_env_value_is_cast_and_unset_or_empty_gives_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_N", "7")
    assert env_default("GW_TEST_N", 3, int) == 7
    monkeypatch.setenv("GW_TEST_N", "")
    assert env_default("GW_TEST_N", 3, int) == 3


def test_bad_env_value_exits_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_MINUTE", "abc")
    with pytest.raises(SystemExit) as exited:
        env_default("RATE_LIMIT_MINUTE", 60, positive_int)
    assert "RATE_LIMIT_MINUTE='abc'" in str(exited.value) and "Traceback" not in str(exited.value)


def test_flag_beats_env_and_help_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_PORT", "9100")
    parser = argparse.ArgumentParser()
    add_option(parser, "--port", "GW_TEST_PORT", 9000, "port", int)
    assert parser.parse_args([]).port == 9100
    assert parser.parse_args(["--port", "9200"]).port == 9200
    assert "env GW_TEST_PORT, default: 9000" in parser.format_help()


def test_one_line_errors_keep_the_message_and_drop_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    one_line_errors("gw.test.pool")
    try:
        raise ConnectionRefusedError("connect call failed")
    except ConnectionRefusedError:
        logging.getLogger("gw.test.pool").warning("Failed to restore %s", "the pool", exc_info=True)
    (record,) = [r for r in caplog.records if r.name == "gw.test.pool"]
    assert record.exc_info is None
    assert record.getMessage() == "Failed to restore the pool (ConnectionRefusedError: connect call failed)"

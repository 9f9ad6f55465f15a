"""common.settings: flags with environment fallbacks; a bad value is a one-line error."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

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
    assert "env GW_TEST_PORT or GW_TEST_PORT_FILE, default: 9000" in " ".join(parser.format_help().split())


def test_one_line_errors_keep_the_message_and_drop_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    one_line_errors("gw.test.pool")
    try:
        raise ConnectionRefusedError("connect call failed")
    except ConnectionRefusedError:
        logging.getLogger("gw.test.pool").warning("Failed to restore %s", "the pool", exc_info=True)
    (record,) = [r for r in caplog.records if r.name == "gw.test.pool"]
    assert record.exc_info is None
    assert record.getMessage() == "Failed to restore the pool (ConnectionRefusedError: connect call failed)"


def test_a_setting_can_come_from_the_file_its_FILE_variable_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.settings import env_default, env_value

    secret = tmp_path / "database-url"
    secret.write_text("postgresql://u:p@db:5432/keys\n")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    assert env_value("DATABASE_URL") == "postgresql://u:p@db:5432/keys"  # trailing newline dropped
    assert env_default("DATABASE_URL", "default") == "postgresql://u:p@db:5432/keys"
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/db")
    assert env_value("DATABASE_URL") == "postgresql://from-env/db"  # the variable itself wins
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(SystemExit, match=r"DATABASE_URL_FILE=.*missing.* cannot be read"):
        env_value("DATABASE_URL")

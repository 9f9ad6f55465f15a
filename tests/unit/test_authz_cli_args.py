"""The key CLI refuses bad arguments with one line and exit 2, before touching any database."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest

from authz_service.keys import cli, render
from authz_service.model import KeyRecord
from authz_service.plans import builtin_plans
from tests.procs import PYTHON, ROOT

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/none"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "authz_service.keys", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "required: COMMAND"),
        (["explode"], "invalid choice"),
        (["generate", "--prefix", "pk_live"], "invalid choice"),
        (["generate", "--rate-limit-minute", "0"], "positive integer"),
        (["generate", "--expires-in", "soon"], "invalid duration"),
        (["generate", "--scopes", "embed,admin"], "unknown scope"),
        (["generate", "--name", "two\nlines"], "printable"),
        (["revoke"], "required: ID"),
        (["revoke", "12"], "invalid key id"),
        (["rotate", "key_0123456789abcdef", "--grace", "1y"], "invalid duration"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = run(*args, "--database-url", UNREACHABLE) if args else run()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_store_is_one_line_exit_1() -> None:
    result = run("list", "--database-url", UNREACHABLE)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "python -m authz_service.keys: error: cannot reach the key store at 127.0.0.1:1/none: "
        + result.stderr.split("/none: ", 1)[1].strip()
    ]


def test_help_explains_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("generate", "list", "revoke", "rotate"):
        assert command in result.stdout
    assert "--expires-in" in run("generate", "--help").stdout
    assert "--grace" in run("rotate", "--help").stdout


def test_listings_show_prefixes_never_secrets() -> None:
    now = datetime.now(UTC)
    record = KeyRecord(
        "key_0123456789abcdef", "sk_test_abcd", "app", "acme", "test", "free", None, 9, ("embed",), now,
        None, None, None, None,
    )  # fmt: skip
    shown = render.key_dict(record, builtin_plans(60, 1000))
    assert shown["prefix"] == "sk_test_abcd"
    assert (shown["rate_limit_per_minute"], shown["rate_limit_per_hour"]) == (60, 9)
    assert "hash" not in " ".join(shown) and "api_key" not in shown
    table = render.text("list", [shown])
    assert "sk_test_abcd…" in table and "embed" in table and "60/m 9/h" in table


def test_parser_defaults() -> None:
    args = cli.build_parser().parse_args(["rotate", "key_0123456789abcdef"])
    assert args.grace.total_seconds() == 0
    args = cli.build_parser().parse_args(["generate"])
    assert args.prefix == "sk_live" and args.scopes == () and args.expires_in is None

"""Flags with environment fallbacks: every service option is `--flag` or `ENV_VAR`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any


def env_value(env: str) -> str:
    """`env`, or when it is unset the contents of the file `<env>_FILE` names (the Docker and
    Kubernetes secrets convention; one trailing newline dropped). '' when neither is set.

    An unreadable file ends the program with a one-line error naming the variable.
    """
    raw = os.environ.get(env, "")
    path = os.environ.get(f"{env}_FILE", "")
    if raw or not path:
        return raw
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().removesuffix("\n").removesuffix("\r")
    except OSError as exc:
        raise SystemExit(f"error: {env}_FILE={path!r} cannot be read: {exc.strerror or exc}") from None


def env_default(env: str, default: Any, cast: Callable[[str], Any] = str) -> Any:
    """The value of `env` (or of the file `<env>_FILE` names) cast with `cast`, or `default`
    when unset or empty.

    A value that does not cast ends the program with a one-line error naming the variable.
    """
    raw = env_value(env)
    if not raw:
        return default
    try:
        return cast(raw)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise SystemExit(f"error: environment variable {env}={raw!r} is invalid: {exc}") from None


def add_option(
    parser: argparse.ArgumentParser,
    flag: str,
    env: str,
    default: Any,
    help: str,
    cast: Callable[[str], Any] = str,
) -> None:
    """Add `flag` whose default comes from `env`, and say so in --help."""
    parser.add_argument(
        flag,
        default=env_default(env, default, cast),
        type=cast,
        help=f"{help} (env {env} or {env}_FILE, default: {default})",
    )


def positive_int(raw: str) -> int:
    """argparse type for counts and limits: an integer >= 1."""
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {raw}")
    return value


def positive_float(raw: str) -> float:
    """argparse type for intervals and timeouts: a number > 0."""
    value = float(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {raw}")
    return value


def non_negative_int(raw: str) -> int:
    """argparse type for ports and sizes where 0 means none/off: an integer >= 0."""
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {raw}")
    return value


def truthy(raw: str) -> bool:
    """An on/off environment value: 1, true, yes or on (any case) is on."""
    return raw.strip().lower() in ("1", "true", "yes", "on")

"""Options shared by the authz processes (gRPC service, HTTP API, key CLI), each `--flag` or env var."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from authz_service.plans import Plans, PlansError, load_plans
from authz_service.sealing import MASTER_KEY_ENV, SealingError, SecretBox, box_from_setting
from common.settings import add_option, positive_int

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5442/postgres"


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: …`) and exit 2, without the usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def fail(prog: str, message: str, code: int = 2) -> NoReturn:
    """A problem found after parsing: same one-line format; exit 2 for a user mistake."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def add_database_option(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser, "--database-url", "DATABASE_URL", DEFAULT_DATABASE_URL, "Postgres DSN of the key store"
    )


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--plans-file",
        "AUTHZ_PLANS_FILE",
        None,
        "YAML file of plans and their default limits (default: built-in 'free' and 'pro')",
        Path,
    )
    add_option(
        parser,
        "--rate-limit-minute",
        "RATE_LIMIT_MINUTE",
        60,
        "per-minute limit of the 'free' plan and of plans that leave it unset",
        positive_int,
    )
    add_option(
        parser,
        "--rate-limit-hour",
        "RATE_LIMIT_HOUR",
        1000,
        "per-hour limit of the 'free' plan and of plans that leave it unset",
        positive_int,
    )


def plans_from_args(args: argparse.Namespace, prog: str) -> Plans:
    try:
        return load_plans(args.plans_file, args.rate_limit_minute, args.rate_limit_hour)
    except PlansError as exc:
        fail(prog, str(exc))


def add_signing_option(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--signing-master-key",
        MASTER_KEY_ENV,
        "",
        "base64 of 32 bytes sealing the keys' request-signing secrets (AES-GCM); best given as a file "
        "via the _FILE variable. Empty: signing keys cannot be created or verified",
    )


def box_from_args(args: argparse.Namespace, prog: str) -> SecretBox | None:
    try:
        return box_from_setting(args.signing_master_key)
    except SealingError as exc:
        fail(prog, str(exc))

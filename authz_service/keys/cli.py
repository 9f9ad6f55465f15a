"""`python -m authz_service.keys`: generate, list, revoke and rotate API keys in the key store.

The plaintext of a key is printed once, by `generate` and `rotate`; only its SHA-256 is stored.
Mistakes in arguments exit 2 with one line; an unreachable store exits 1 with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from authz_service import keys, scopes
from authz_service.durations import parse_duration
from authz_service.keys import render
from authz_service.plans import Plans, PlansError, load_plans
from authz_service.sealing import MASTER_KEY_ENV, SealingError, SecretBox, box_from_setting
from authz_service.settings import OneLineParser, add_database_option, fail
from authz_service.store import KeyStateError, PostgresKeyStore, new_key_id, new_signing_secret
from common.settings import add_option, env_default, positive_int
from usage_service import report

PROG = "python -m authz_service.keys"
KEY_ID_CHARS = 20  # key_ + 16 hex
LABEL_CHARS = 100


class UserError(Exception):
    """A mistake in what was asked: one line, exit 2."""


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _network(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4/IPv6 address or CIDR") from None


def _scopes(text: str) -> tuple[str, ...]:
    try:
        return scopes.parse_scopes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _label(text: str) -> str:
    """Names and owners travel as header values (x-gateway-owner): printable, 1-100 characters."""
    if not 1 <= len(text) <= LABEL_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise argparse.ArgumentTypeError(f"must be 1-{LABEL_CHARS} printable characters")
    return text


def _key_id(text: str) -> str:
    if not (text.startswith("key_") and len(text) == KEY_ID_CHARS and text[4:].isalnum()):
        raise argparse.ArgumentTypeError(f"invalid key id {text!r}: ids look like key_0123456789abcdef")
    return text


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_database_option(common)
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser = OneLineParser(
        prog=PROG,
        description="Manage API keys. Keys are shown once, when generated or rotated; only their "
        "SHA-256 is stored. Revocation and rotation reach every authz replica within a second.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )

    generate = commands.add_parser("generate", parents=[common], help="create a key and print it once")
    generate.add_argument(
        "--prefix", default="sk_live", choices=keys.PREFIXES, help="key prefix (environment)"
    )
    generate.add_argument(
        "--name", type=_label, default="default", help="what the key is for (shown in listings)"
    )
    generate.add_argument(
        "--owner", type=_label, help="who holds it; sent upstream as x-gateway-owner (default: --name)"
    )
    generate.add_argument("--plan", help="plan whose limits apply where the key sets none (default: free)")
    generate.add_argument(
        "--rate-limit-minute", type=positive_int, help="own per-minute limit (default: plan's)"
    )
    generate.add_argument("--rate-limit-hour", type=positive_int, help="own per-hour limit (default: plan's)")
    generate.add_argument(
        "--token-limit-minute", type=positive_int, help="own tokens per minute (default: plan's, if any)"
    )
    generate.add_argument(
        "--token-limit-day", type=positive_int, help="own tokens per day (default: plan's, if any)"
    )
    generate.add_argument("--expires-in", type=_duration, help="lifetime, e.g. 30d, 12h (default: never)")
    generate.add_argument(
        "--allow-ip", type=_network, action="append", default=[], metavar="CIDR",
        help="a client address or network the key may be used from (IPv4/IPv6; repeatable; default: any); "
        "kept across rotate",
    )  # fmt: skip
    generate.add_argument(
        "--signing", action="store_true",
        help=f"requests must be signed (X-Signature); prints the signing secret once ({MASTER_KEY_ENV})",
    )  # fmt: skip
    groups = ", ".join(scopes.SCOPES)
    generate.add_argument(
        "--scopes", type=_scopes, default=(), help=f"comma-separated route groups ({groups}); default: all"
    )
    add_option(
        generate, "--plans-file", "AUTHZ_PLANS_FILE", None, "plans YAML, to check --plan against", Path
    )

    listing = commands.add_parser("list", parents=[common], help="list keys (never their secrets)")
    listing.add_argument("--active", action="store_true", help="only keys that still work")

    revoke = commands.add_parser("revoke", parents=[common], help="revoke a key now")
    revoke.add_argument("key_id", metavar="ID", type=_key_id, help="the key's id (see `list`)")

    rotate = commands.add_parser(
        "rotate", parents=[common], help="issue a replacement; the old key works for --grace more"
    )
    rotate.add_argument("key_id", metavar="ID", type=_key_id, help="the key's id (see `list`)")
    rotate.add_argument("--grace", type=_duration, default=timedelta(0), help="e.g. 24h (default: 0, now)")

    usage = commands.add_parser(
        "usage", parents=[common], help="the key's usage records per hour (docs/usage.md)"
    )
    usage.add_argument("key_id", metavar="ID", type=_key_id, help="the key's id (see `list`)")
    usage.add_argument("--since", type=_duration, default=timedelta(days=7), help="e.g. 24h (default: 7d)")
    usage.add_argument("--plot", type=Path, metavar="FILE.png", help="also plot requests and tokens per hour")
    return parser


def _box() -> SecretBox | None:
    """The signing master key's box (same env vars as the services), None when none is set."""
    try:
        return box_from_setting(env_default(MASTER_KEY_ENV, ""))
    except SealingError as exc:
        raise UserError(str(exc)) from None


def _plans(plans_file: Path | None = None) -> Plans:
    """The plans the services use (same env vars), to name limits in the output."""
    plans_file = plans_file or env_default("AUTHZ_PLANS_FILE", None, Path)
    minute = env_default("RATE_LIMIT_MINUTE", 60, int)
    hour = env_default("RATE_LIMIT_HOUR", 1000, int)
    try:
        return load_plans(plans_file, minute, hour)
    except PlansError as exc:
        raise UserError(str(exc)) from None


async def generate(store: PostgresKeyStore, args: argparse.Namespace) -> dict:
    plans = _plans(args.plans_file)
    plan = args.plan or plans.default_plan
    if plan not in plans:
        raise UserError(f"unknown plan {plan!r}; choose from {', '.join(plans.names())}")
    key_id, secret, sealed = new_key_id(), None, None
    if args.signing:
        box = _box()
        if box is None:
            raise UserError(f"--signing needs the master key: set {MASTER_KEY_ENV} or {MASTER_KEY_ENV}_FILE")
        secret, sealed = new_signing_secret(box, key_id)
    key = keys.generate_key(args.prefix)
    expires_at = datetime.now(UTC) + args.expires_in if args.expires_in else None
    record = await store.create_key(
        key, args.name, args.owner or args.name, plan, args.rate_limit_minute, args.rate_limit_hour,
        args.scopes, expires_at, allowed_ips=args.allow_ip, key_id=key_id, signing_secret_enc=sealed,
        token_limit_per_minute=args.token_limit_minute, token_limit_per_day=args.token_limit_day,
    )  # fmt: skip
    shown = {"api_key": key, **({"signing_secret": secret} if secret else {})}
    return {**shown, **render.key_dict(record, plans)}


async def list_keys(store: PostgresKeyStore, args: argparse.Namespace) -> list[dict]:
    plans = _plans()
    return [render.key_dict(r, plans) for r in await store.list_keys(include_inactive=not args.active)]


async def revoke(store: PostgresKeyStore, args: argparse.Namespace) -> dict:
    record = await store.revoke(args.key_id)
    if record is None:
        raise UserError(f"no key with id {args.key_id}")
    return render.key_dict(record, _plans())


async def rotate(store: PostgresKeyStore, args: argparse.Namespace) -> dict:
    try:
        old, new, new_key, secret = await store.rotate(args.key_id, args.grace, _box())
    except LookupError:
        raise UserError(f"no key with id {args.key_id}") from None
    except KeyStateError as exc:
        raise UserError(str(exc)) from None
    plans = _plans()
    shown = {"api_key": new_key, **({"signing_secret": secret} if secret else {})}
    return {**shown, **render.key_dict(new, plans), "replaces": render.key_dict(old, plans)}


async def usage(_: PostgresKeyStore, args: argparse.Namespace) -> dict:
    try:
        return await report.key_usage(args.database_url, args.key_id, args.since, args.plot)
    except ValueError as exc:
        raise UserError(str(exc)) from None


COMMANDS: dict[str, Callable[[PostgresKeyStore, argparse.Namespace], Awaitable[object]]] = {
    "generate": generate,
    "list": list_keys,
    "revoke": revoke,
    "rotate": rotate,
    "usage": usage,
}


def _where(dsn: str) -> str:
    """host:port/db of a DSN, never its password."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"


async def run(args: argparse.Namespace) -> object:
    try:
        store = await PostgresKeyStore.connect(args.database_url, retry_seconds=0, max_size=2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConnectionError(f"cannot reach the key store at {_where(args.database_url)}: {exc}") from None
    except ValueError as exc:  # a DSN asyncpg cannot parse
        raise UserError(f"invalid --database-url: {exc}") from None
    try:
        return await COMMANDS[args.command](store, args)
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        result = asyncio.run(run(args))
    except UserError as exc:
        fail(PROG, str(exc))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        fail(PROG, str(exc) or type(exc).__name__, 1)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(report.text(result) if args.command == "usage" else render.text(args.command, result))

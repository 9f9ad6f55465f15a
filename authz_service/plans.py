"""Plans: named default limits for keys whose own per-minute / per-hour limits are unset.

Built in: `free` (the service defaults, `--rate-limit-minute` / `--rate-limit-hour`, i.e. the
RATE_LIMIT_MINUTE / RATE_LIMIT_HOUR the ratelimit service also reads) and `pro`. A YAML file
(`--plans-file`) replaces them:

    default_plan: free           # plan of new keys when none is given (default: free)
    plans:
      free: {}                   # a missing limit falls back to the service defaults
      pro: {rate_limit_minute: 600, rate_limit_hour: 10000}
      metered: {token_limit_per_minute: 100000, token_limit_per_day: 5000000}

Token limits (docs/ratelimit.md#token-limits) have no service default: a plan without them, and
its keys without their own, have none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PLAN = "free"
PRO_LIMITS = (600, 10_000)
_PLAN_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_LIMIT_FIELDS = ("rate_limit_minute", "rate_limit_hour")
_TOKEN_FIELDS = ("token_limit_per_minute", "token_limit_per_day")


class PlansError(ValueError):
    """A plans file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Limits:
    per_minute: int
    per_hour: int
    tokens_per_minute: int | None = None  # None: no token limit
    tokens_per_day: int | None = None


@dataclass(frozen=True)
class Plans:
    by_name: Mapping[str, Limits]
    default_plan: str
    fallback: Limits  # for keys whose plan is no longer configured: never lock them out

    def __contains__(self, plan: object) -> bool:
        return plan in self.by_name

    def names(self) -> list[str]:
        return list(self.by_name)

    def limits_for(
        self,
        plan: str,
        per_minute: int | None = None,
        per_hour: int | None = None,
        tokens_per_minute: int | None = None,
        tokens_per_day: int | None = None,
    ) -> Limits:
        """A key's effective limits: its own where set, else its plan's."""
        base = self.by_name.get(plan, self.fallback)
        return Limits(
            per_minute or base.per_minute,
            per_hour or base.per_hour,
            tokens_per_minute or base.tokens_per_minute,
            tokens_per_day or base.tokens_per_day,
        )

    def key_limits(self, record: Any) -> Limits:
        """The effective limits of a key record (authz_service.model.KeyRecord)."""
        return self.limits_for(
            record.plan, record.rate_limit_minute, record.rate_limit_hour,
            record.token_limit_per_minute, record.token_limit_per_day,
        )  # fmt: skip


def token_limits(limits: Limits) -> dict[str, int | None]:
    """Token limits by unit, as ratelimit_service.tokens names them."""
    return {"minute": limits.tokens_per_minute, "day": limits.tokens_per_day}


def builtin_plans(per_minute: int, per_hour: int) -> Plans:
    defaults = Limits(per_minute, per_hour)
    return Plans({DEFAULT_PLAN: defaults, "pro": Limits(*PRO_LIMITS)}, DEFAULT_PLAN, defaults)


def _positive(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlansError(f"{where}: must be a positive integer, got {value!r}")
    return value


def parse_plans(document: object, per_minute: int, per_hour: int, source: str = "plans") -> Plans:
    """Validate a loaded YAML document (see the module docstring) into Plans."""
    if not isinstance(document, dict) or not isinstance(document.get("plans"), dict) or not document["plans"]:
        raise PlansError(f"{source}: expected a mapping with a non-empty 'plans' mapping")
    extra = set(document) - {"plans", "default_plan"}
    if extra:
        raise PlansError(f"{source}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
    defaults = Limits(per_minute, per_hour)
    by_name: dict[str, Limits] = {}
    for name, spec in document["plans"].items():
        where = f"{source}: plans.{name}"
        if not isinstance(name, str) or not _PLAN_NAME_RE.fullmatch(name):
            raise PlansError(f"{where}: plan names are lower-case letters, digits, '_' or '-'")
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - set(_LIMIT_FIELDS) - set(_TOKEN_FIELDS):
            raise PlansError(f"{where}: only {', '.join(_LIMIT_FIELDS + _TOKEN_FIELDS)} may be set")
        minute = spec.get("rate_limit_minute")
        hour = spec.get("rate_limit_hour")
        tokens = {f: _positive(spec[f], f"{where}.{f}") for f in _TOKEN_FIELDS if spec.get(f) is not None}
        by_name[name] = Limits(
            _positive(minute, f"{where}.rate_limit_minute") if minute is not None else defaults.per_minute,
            _positive(hour, f"{where}.rate_limit_hour") if hour is not None else defaults.per_hour,
            tokens.get("token_limit_per_minute"),
            tokens.get("token_limit_per_day"),
        )
    default_plan = document.get("default_plan", DEFAULT_PLAN)
    if default_plan not in by_name:
        raise PlansError(f"{source}: default_plan {default_plan!r} is not one of the plans")
    return Plans(by_name, default_plan, defaults)


def load_plans(path: Path | None, per_minute: int, per_hour: int) -> Plans:
    """Plans from `path` (YAML), or the built-in ones when no file is given."""
    if path is None:
        return builtin_plans(per_minute, per_hour)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PlansError(f"{path}: cannot read plans file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PlansError(f"{path}: invalid YAML: {exc}") from None
    return parse_plans(document, per_minute, per_hour, str(path))

"""Planning a decision: descriptors matched to config rules become the store windows to decide,
with their counter keys, overrides and token windows (and the stats counters each one bumps).
No I/O; the Limiter runs the plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ratelimit_service import metrics, tokens
from ratelimit_service.config.model import OVERRIDE_PREFIX, Rule, composite_key
from ratelimit_service.store.base import ALGORITHM_CODES, CHARGE, CHECK, StoreWindow
from ratelimit_service.windows import UNIT_SECONDS, Window

OVERRIDE_KEYS = {f"{OVERRIDE_PREFIX}{unit}": unit for unit in UNIT_SECONDS}


@dataclass(frozen=True, slots=True)
class RequestDescriptor:
    entries: tuple[tuple[str, str], ...]
    # Per-key limits (authz metadata, fused mode, usage): unit → limit, each replacing the
    # configured window of its unit (or adding one).
    overrides: Mapping[str, int] = field(default_factory=dict)
    # Envoy's `limit` field: replaces the descriptor's whole limit, matched or not, as in
    # envoyproxy/ratelimit (no shadow mode, no name, counted under the descriptor's own key).
    limit: Window | None = None
    # The descriptor's own hits_addend (None: the request's). Used by token descriptors only
    # (ratelimit_service.tokens): 0 checks the budget, more charges it.
    hits: int | None = None


@dataclass(frozen=True, slots=True)
class Planned:
    """A request descriptor with the windows that apply to it."""

    descriptor: int  # index in the request
    rule: Rule | None  # None: only per-key overrides or Envoy's limit apply
    windows: tuple[StoreWindow, ...]
    label: str  # metrics label: envoyproxy/ratelimit's stats key without the domain


@dataclass(frozen=True, slots=True)
class Plan:
    """What a descriptor set is charged against: fixed under one config, so built once."""

    planned: tuple[Planned, ...]
    windows: tuple[StoreWindow, ...]  # every window of every descriptor, in store order
    owners: tuple[int, ...]  # descriptor index of each window
    all_enforced: bool  # no shadow window: the store's states are the decision's as they are
    within_limit: tuple[Any, ...]  # the WITHIN_LIMIT metric of each planned descriptor
    # Token charges (stream done): descriptor index → its windows, each charged on its own.
    charges: tuple[Planned, ...] = ()


def make_plan(domain: str, planned: list[Planned]) -> Plan:
    charges = tuple(p for p in planned if p.windows[0].mode == CHARGE)
    planned = [p for p in planned if p.windows[0].mode != CHARGE]
    windows = tuple(w for p in planned for w in p.windows)
    return Plan(
        tuple(planned),
        windows,
        tuple(p.descriptor for p in planned for _ in p.windows),
        all(w.enforced for w in windows),
        tuple(metrics.decision_counter(domain, p.label, metrics.WITHIN_LIMIT) for p in planned),
        charges,
    )


def split_overrides(entries: Sequence[tuple[str, str]]) -> tuple[tuple[tuple[str, str], ...], dict[str, int]]:
    """Separate `rate_limit_<unit>` entries (per-key limits from authz) from the ones to match."""
    if not any(key in OVERRIDE_KEYS for key, _ in entries):
        return tuple(entries), {}
    kept, overrides = [], {}
    for key, value in entries:
        unit = OVERRIDE_KEYS.get(key)
        if unit is None:
            kept.append((key, value))
            continue
        try:
            limit = int(float(value))  # Envoy may render a JSON number as "70" or "70.0"
        except ValueError:
            continue
        if limit >= 1:
            overrides[unit] = limit
    return tuple(kept), overrides


def apply_overrides(windows: tuple[Window, ...], overrides: Mapping[str, int]) -> tuple[Window, ...]:
    """Per-key limits replace the window of the same unit, or add a sliding window."""
    by_unit = {w.unit: w for w in windows}
    for unit, limit in overrides.items():
        by_unit[unit] = replace(by_unit[unit], limit=limit) if unit in by_unit else Window(unit, limit)
    return tuple(sorted(by_unit.values(), key=lambda w: w.seconds))


def _escape(text: str) -> str:
    if "|" in text or "=" in text or "\\" in text:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("=", "\\=")
    return text


def counter_base(domain: str, entries: Sequence[tuple[str, str]]) -> str:
    """`rl:{domain|k=v|…}`: the braces are the Redis Cluster hash tag shared by its windows."""
    return "rl:{" + "|".join([_escape(domain), *(f"{_escape(k)}={_escape(v)}" for k, v in entries)]) + "}"


def store_windows(
    base: str, windows: tuple[Window, ...], enforced: bool, quota: int = 0, mode: str = ""
) -> tuple[StoreWindow, ...]:
    return tuple(
        StoreWindow(f"{base}:{w.seconds}{ALGORITHM_CODES[w.algorithm]}", w, enforced, quota, mode)
        for w in windows
    )


def token_planned(domain: str, index: int, descriptor: RequestDescriptor) -> Planned | None:
    """A token descriptor's windows: sliding windows of its `token_limits`, never the config's rules.
    Hits 0 (or none) checks the budget before the upstream; more charges it at stream done."""
    counted = tuple((k, v) for k, v in descriptor.entries if k != tokens.LIMITS_KEY)
    limits: dict[str, int] = {}
    for key, value in descriptor.entries:
        if key == tokens.LIMITS_KEY:
            limits.update(tokens.parse_limits(value))
    if not limits:
        return None
    windows = tuple(sorted((Window(u, n, tokens=True) for u, n in limits.items()), key=lambda w: w.seconds))
    mode = CHARGE if descriptor.hits else CHECK
    base = counter_base(domain, counted)
    return Planned(index, None, store_windows(base, windows, True, 0, mode), "tokens")


def is_token_descriptor(descriptor: RequestDescriptor) -> bool:
    return any(key == tokens.LIMITS_KEY for key, _ in descriptor.entries)


def stat_key(domain: str, entries: Sequence[tuple[str, str]]) -> str:
    """envoyproxy/ratelimit's stats key for a descriptor limited by Envoy's `limit` field."""
    return ".".join([domain, *(composite_key(k, v) for k, v in entries)])

"""One rate-limit decision: descriptors → config rules → windows → one store call → verdict.

No gRPC or protobuf here. Per request: match each descriptor against the current config
(most specific wins; per-key overrides beat it), drop replaced rules, answer from the
local over-limit cache when a window is known to be full, otherwise ask the store once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ratelimit_service import metrics, tokens
from ratelimit_service.backoff import progressive_retry_after
from ratelimit_service.config.model import OVERRIDE_PREFIX, DomainConfig, RateLimitConfig, Rule, composite_key
from ratelimit_service.local_cache import OverLimitCache
from ratelimit_service.store.base import ALGORITHM_CODES, CHARGE, CHECK, StoreWindow, WindowStore
from ratelimit_service.windows import UNIT_SECONDS, Decision, Window, WindowOutcome, safe_retry_after_ms

OK, OVER_LIMIT, UNAVAILABLE = "ok", "over_limit", "unavailable"
MAX_REMEMBERED_PLANS = 10_000  # about 1 KB each; all forgotten at once when full
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


@dataclass(frozen=True, slots=True)
class Verdict:
    code: str  # OK, OVER_LIMIT or UNAVAILABLE (store down with failure_mode: deny)
    decision: Decision | None = None  # the enforced windows; None when no window applied
    owners: tuple[int, ...] = ()  # descriptor index of each decision state
    retry_after: int = 0


NO_LIMITS = Verdict(OK)


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


class Limiter:
    def __init__(
        self,
        config: RateLimitConfig,
        store: WindowStore,
        cache: OverLimitCache | None = None,
        rng: random.Random | None = None,
        near_limit_ratio: float = 0.8,
    ) -> None:
        self.near_limit_ratio = near_limit_ratio  # envoyproxy/ratelimit's NEAR_LIMIT_RATIO
        self.config = config
        self.store = store
        self.cache = cache if cache is not None else OverLimitCache()
        self.rng = rng or random.Random()
        # The same descriptors (a key's requests) always plan the same under one config:
        # remember the plan instead of matching rules and building key names per request.
        self._plans: dict[tuple, Plan] = {}

    def set_config(self, config: RateLimitConfig) -> None:
        """Swap the config (hot reload); cached denials may follow rules that changed."""
        self.config = config
        self.cache.clear()
        self._plans = {}

    def plan(self, domain: DomainConfig, descriptors: Sequence[RequestDescriptor]) -> Plan:
        """The windows every descriptor is charged against (remembered per descriptor set)."""
        signature = (
            domain.domain,
            *(
                (d.entries, tuple(d.overrides.items()), bool(d.hits))
                if d.overrides or d.hits is not None
                else d.entries
                for d in descriptors
            ),
        )
        plan = self._plans.get(signature)
        if plan is None:
            if len(self._plans) >= MAX_REMEMBERED_PLANS:
                self._plans = {}
            plan = self._plans[signature] = make_plan(domain.domain, self._plan(domain, descriptors))
        return plan

    def _plan(self, domain: DomainConfig, descriptors: Sequence[RequestDescriptor]) -> list[Planned]:
        matched: list[tuple[int, Rule | None, tuple[tuple[str, str], ...], tuple[Window, ...], str]] = []
        replaced: set[str] = set()
        token_windows: list[Planned] = []
        for i, descriptor in enumerate(descriptors):
            if is_token_descriptor(descriptor):
                found_tokens = token_planned(domain.domain, i, descriptor)
                if found_tokens is not None:
                    token_windows.append(found_tokens)
                continue
            entries, overrides = split_overrides(descriptor.entries)
            if descriptor.limit is not None:
                matched.append((i, None, entries, (descriptor.limit,), stat_key(domain.domain, entries)))
                continue
            overrides = {**overrides, **descriptor.overrides} if descriptor.overrides else overrides
            found = domain.match(entries) if entries else None
            if found is None and not overrides:
                continue
            rule = found.rule if found is not None else None
            if rule is not None and rule.replaces:
                replaced.update(rule.replaces)
            windows = rule.windows if rule is not None else ()
            if overrides:
                windows = apply_overrides(windows, overrides)
            counted = found.counter_entries if found is not None else entries
            key = found.stat_key if found is not None else f"{domain.domain}.per_key_override"
            matched.append((i, rule, counted, windows, key))
        planned = []
        for i, rule, counted, windows, key in matched:
            if rule is not None and rule.name is not None and rule.name in replaced:
                continue
            if not windows:
                continue  # unlimited
            enforced = rule is None or not rule.shadow_mode
            quota = i + 1 if rule is not None and rule.quota_mode and enforced else 0
            base = counter_base(domain.domain, counted)
            label = key.removeprefix(f"{domain.domain}.")
            planned.append(Planned(i, rule, store_windows(base, windows, enforced, quota), label))
        # Token checks first: on Redis Cluster a request whose counters span slots is decided slot
        # by slot, and a refused token check must come before any request window is charged.
        return token_windows + planned

    async def decide(
        self, domain_name: str, descriptors: Sequence[RequestDescriptor], hits: int = 1
    ) -> Verdict:
        domain = self.config.domain(domain_name)
        if domain is None:
            return NO_LIMITS
        plan = self.plan(domain, descriptors)
        if plan.charges:
            await self._charge(domain, plan.charges, descriptors)
        planned = plan.planned
        if not planned:
            return NO_LIMITS
        if self.cache:  # something is over its limit: maybe this request's windows
            cached = self._from_cache(domain, planned, hits)
            if cached is not None:
                return cached
        started = time.perf_counter()
        try:
            result = await self.store.apply(plan.windows, hits)
        except Exception as exc:  # any store failure: the configured failure mode answers
            metrics.STORE_ERRORS.labels(type(exc).__name__).inc()
            return self._failure(domain, planned)
        metrics.STORE_SECONDS.observe(time.perf_counter() - started)
        if plan.all_enforced:  # the common case: every window counts, in plan order
            decision = Decision(result.allowed, result.states, hits)
            if result.allowed:
                for counter in plan.within_limit:
                    counter.inc(hits)
                self._near_limit(domain, planned, decision, plan.owners)
                return Verdict(OK, decision, plan.owners)
            return self._denied(domain, planned, decision, plan.owners, plan.windows)
        states: list[WindowOutcome] = []
        owners: list[int] = []
        specs: list[StoreWindow] = []  # aligned with states
        i = 0
        for p in planned:
            shadow_over = False
            for spec in p.windows:
                if spec.enforced:
                    states.append(result.states[i])
                    owners.append(p.descriptor)
                    specs.append(spec)
                elif not result.fits[i]:
                    shadow_over = True
                i += 1
            if shadow_over:
                metrics.count_decision(domain.domain, p.label, metrics.SHADOW_OVER_LIMIT, hits)
        if not states:  # only shadow windows: nothing to enforce or to report
            for p in planned:
                metrics.count_decision(domain.domain, p.label, metrics.WITHIN_LIMIT, hits)
            return NO_LIMITS
        decision = Decision(result.allowed, tuple(states), hits)
        if result.allowed:
            for p in planned:
                metrics.count_decision(domain.domain, p.label, metrics.WITHIN_LIMIT, hits)
            self._near_limit(domain, planned, decision, tuple(owners))
            return Verdict(OK, decision, tuple(owners))
        return self._denied(domain, planned, decision, tuple(owners), tuple(specs))

    async def _charge(
        self, domain: DomainConfig, charges: Sequence[Planned], descriptors: Sequence[RequestDescriptor]
    ) -> None:
        """Token charges at stream done: always counted (Envoy ignores the answer). A store failure
        loses the charge: the request was served already, there is nothing left to refuse."""
        for p in charges:
            hits = descriptors[p.descriptor].hits or 0
            try:
                await self.store.apply(p.windows, hits)
            except Exception as exc:
                metrics.STORE_ERRORS.labels(type(exc).__name__).inc()
                continue
            metrics.count_decision(domain.domain, p.label, metrics.WITHIN_LIMIT, hits)

    def _denied(
        self,
        domain: DomainConfig,
        planned: Sequence[Planned],
        decision: Decision,
        owners: tuple[int, ...],
        specs: Sequence[StoreWindow],
    ) -> Verdict:
        overage = 1
        for state, spec in zip(decision.states, specs, strict=True):
            # Cache only a window that is full for any request (not one too big for what is left):
            # the cache answers every request for that key as over the limit.
            # Not a quota window: another quota group may still let the next request through.
            if not state.admits(1) and not spec.quota:
                entry = self.cache.deny_until(spec.key, spec.window, safe_retry_after_ms(state, 1))
                overage = max(overage, entry.denials)
        self._count(domain, planned, decision, owners)
        return Verdict(
            OVER_LIMIT, decision, owners, self._retry_after(domain, planned, decision, owners, overage)
        )

    def _from_cache(self, domain: DomainConfig, planned: Sequence[Planned], hits: int) -> Verdict | None:
        states, owners = [], []
        for p in planned:
            for spec in p.windows:
                entry = (
                    self.cache.get(spec.key, spec.window.limit) if spec.enforced and not spec.quota else None
                )
                if entry is not None:
                    entry.denials += 1
                    states.append(entry)
                    owners.append(p.descriptor)
        if not states:
            return None
        metrics.LOCAL_CACHE_HITS.inc()
        decision = Decision(False, tuple(states), hits)
        self._count(domain, planned, decision, tuple(owners))
        overage = max(e.denials for e in states)
        retry_after = self._retry_after(domain, planned, decision, tuple(owners), overage)
        return Verdict(OVER_LIMIT, decision, tuple(owners), retry_after)

    def _count(
        self, domain: DomainConfig, planned: Sequence[Planned], decision: Decision, owners: tuple
    ) -> None:
        denying = {o for s, o in zip(decision.states, owners, strict=True) if not s.admits(decision.hits)}
        for p in planned:
            result = metrics.OVER_LIMIT if p.descriptor in denying else metrics.WITHIN_LIMIT
            metrics.count_decision(domain.domain, p.label, result, decision.hits)

    def _near_limit(
        self, domain: DomainConfig, planned: Sequence[Planned], decision: Decision, owners: tuple
    ) -> None:
        """envoyproxy/ratelimit's near_limit: admitted hits above NEAR_LIMIT_RATIO of a window."""
        for state, owner in zip(decision.states, owners, strict=True):
            threshold = int(state.window.limit * self.near_limit_ratio)
            near = min(decision.hits, state.used() - threshold)
            if near > 0:
                label = next(p.label for p in planned if p.descriptor == owner)
                metrics.count_near_limit(domain.domain, label, near)

    def _retry_after(
        self,
        domain: DomainConfig,
        planned: Sequence[Planned],
        decision: Decision,
        owners: tuple,
        overage: int,
    ) -> int:
        exact = decision.retry_after()
        blocking = decision.blocking()
        owner = next(o for s, o in zip(decision.states, owners, strict=True) if s is blocking)
        rule = next((p.rule for p in planned if p.descriptor == owner), None)
        policy = (rule.retry_after if rule is not None else None) or domain.retry_after
        if policy.backoff != "progressive":
            return exact
        return progressive_retry_after(overage, exact, policy.jitter, self.rng)

    def _failure(self, domain: DomainConfig, planned: Sequence[Planned]) -> Verdict:
        allow = domain.failure_mode == "allow"
        result = metrics.FAILURE_MODE_ALLOWED if allow else metrics.FAILURE_MODE_DENIED
        for p in planned:
            metrics.count_decision(domain.domain, p.label, result)
        return NO_LIMITS if allow else Verdict(UNAVAILABLE)

    async def usage(
        self,
        domain_name: str,
        entries: Sequence[tuple[str, str]],
        overrides: Mapping[str, int] | None = None,
        token_descriptor: RequestDescriptor | None = None,
    ) -> tuple[WindowOutcome, ...]:
        """The current state of every window that applies to one descriptor (and the key's token
        descriptor, if it has token limits), without charging it."""
        domain = self.config.domain(domain_name)
        if domain is None:
            return ()
        wanted = [RequestDescriptor(tuple(entries), dict(overrides or {}))]
        plan = self.plan(domain, wanted + ([token_descriptor] if token_descriptor is not None else []))
        if not plan.windows:
            return ()
        return (await self.store.apply(plan.windows, 0, peek=True)).states


def stat_key(domain: str, entries: Sequence[tuple[str, str]]) -> str:
    """envoyproxy/ratelimit's stats key for a descriptor limited by Envoy's `limit` field."""
    return ".".join([domain, *(composite_key(k, v) for k, v in entries)])

"""One rate-limit decision: descriptors → config rules → windows → one store call → verdict.

No gRPC or protobuf here. Per request: match each descriptor against the current config
(most specific wins; per-key overrides beat it), drop replaced rules, answer from the
local over-limit cache when a window is known to be full, otherwise ask the store once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ratelimit_service import metrics
from ratelimit_service.backoff import progressive_retry_after
from ratelimit_service.config.model import DomainConfig, RateLimitConfig, Rule
from ratelimit_service.local_cache import OverLimitCache
from ratelimit_service.plan import (
    Plan,
    Planned,
    RequestDescriptor,
    apply_overrides,
    counter_base,
    is_token_descriptor,
    make_plan,
    split_overrides,
    stat_key,
    store_windows,
    token_planned,
)
from ratelimit_service.store.base import StoreWindow, WindowStore
from ratelimit_service.windows import Decision, Window, WindowOutcome, safe_retry_after_ms

OK, OVER_LIMIT, UNAVAILABLE = "ok", "over_limit", "unavailable"
MAX_REMEMBERED_PLANS = 10_000  # about 1 KB each; all forgotten at once when full


@dataclass(frozen=True, slots=True)
class Verdict:
    code: str  # OK, OVER_LIMIT or UNAVAILABLE (store down with failure_mode: deny)
    decision: Decision | None = None  # the enforced windows; None when no window applied
    owners: tuple[int, ...] = ()  # descriptor index of each decision state
    retry_after: int = 0


NO_LIMITS = Verdict(OK)


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

"""The validated, immutable rate-limit configuration and its descriptor lookup (pure).

Lookup follows envoyproxy/ratelimit: walk the request descriptor's entries down the tree,
at each level preferring an exact `key=value` node, then a wildcard value (`foo*`), then a
key-only node (any value). A limit applies only when the last entry lands on a node that
has one; there is no backtracking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ratelimit_service.windows import Window

FAILURE_MODES = ("allow", "deny")
BACKOFFS = ("exact", "progressive")
# Descriptor entries that carry per-key limits (from the authz service's metadata).
# They are not part of the match or of the counter key: changing a limit keeps the counts.
OVERRIDE_PREFIX = "rate_limit_"


@dataclass(frozen=True, slots=True)
class RetryAfterPolicy:
    backoff: str = "exact"  # exact: seconds until a slot frees; progressive: seed 003 tiers
    jitter: float = 0.0  # ± fraction applied to progressive values


@dataclass(frozen=True, slots=True)
class Rule:
    """The limits of one descriptor node."""

    path: str  # where it is in its file, e.g. descriptors[0].descriptors[1]
    metric_key: str  # e.g. route_v1.plan.api_key (bounded label for metrics)
    windows: tuple[Window, ...] = ()
    unlimited: bool = False
    name: str | None = None
    shadow_mode: bool = False
    replaces: tuple[str, ...] = ()
    detailed_metric: bool = False
    retry_after: RetryAfterPolicy | None = None


def _empty() -> Mapping:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Children:
    exact: Mapping[tuple[str, str], Node] = field(default_factory=_empty)
    wildcards: tuple[tuple[str, str, Node], ...] = ()  # (key, value prefix, node)
    any_value: Mapping[str, Node] = field(default_factory=_empty)

    def find(self, key: str, value: str) -> Node | None:
        node = self.exact.get((key, value))
        if node is None and self.wildcards:
            for wild_key, prefix, wild_node in self.wildcards:
                if wild_key == key and value.startswith(prefix):
                    return wild_node
        return node if node is not None else self.any_value.get(key)

    def __bool__(self) -> bool:
        return bool(self.exact or self.wildcards or self.any_value)


@dataclass(frozen=True, slots=True)
class Node:
    key: str
    value: str | None
    rule: Rule | None
    children: Children = field(default_factory=Children)


@dataclass(frozen=True, slots=True)
class DomainConfig:
    domain: str
    source: str  # the file it came from
    children: Children
    failure_mode: str = "allow"
    retry_after: RetryAfterPolicy = RetryAfterPolicy()
    # What GET /v1/usage reads: entries with "{plan}" / "{key_id}" placeholders.
    usage_descriptor: tuple[tuple[str, str], ...] = (
        ("route", "v1"),
        ("plan", "{plan}"),
        ("api_key", "{key_id}"),
    )

    def rule_for(self, entries: Sequence[tuple[str, str]]) -> Rule | None:
        children = self.children
        last = len(entries) - 1
        for i, (key, value) in enumerate(entries):
            node = children.find(key, value)
            if node is None:
                return None
            if i == last:
                return node.rule
            children = node.children
            if not children:
                return None
        return None

    def rules(self) -> list[Rule]:
        found: list[Rule] = []

        def walk(children: Children) -> None:
            nodes = [*children.exact.values(), *(n for _, _, n in children.wildcards)]
            for node in [*nodes, *children.any_value.values()]:
                if node.rule is not None:
                    found.append(node.rule)
                walk(node.children)

        walk(self.children)
        return found


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    domains: Mapping[str, DomainConfig]
    sources: tuple[str, ...] = ()

    def domain(self, name: str) -> DomainConfig | None:
        return self.domains.get(name)


def with_unit_limits(config: RateLimitConfig, limits: Mapping[str, int]) -> RateLimitConfig:
    """A copy where every window of the given units has the given limit (for CLI flags)."""

    def fix_children(children: Children) -> Children:
        return Children(
            MappingProxyType({k: fix_node(n) for k, n in children.exact.items()}),
            tuple((k, p, fix_node(n)) for k, p, n in children.wildcards),
            MappingProxyType({k: fix_node(n) for k, n in children.any_value.items()}),
        )

    def fix_node(node: Node) -> Node:
        rule = node.rule
        if rule is not None:
            windows = tuple(replace(w, limit=limits.get(w.unit, w.limit)) for w in rule.windows)
            rule = replace(rule, windows=windows)
        return replace(node, rule=rule, children=fix_children(node.children))

    domains = {n: replace(d, children=fix_children(d.children)) for n, d in config.domains.items()}
    return RateLimitConfig(MappingProxyType(domains), config.sources)

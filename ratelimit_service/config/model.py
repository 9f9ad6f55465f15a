"""The validated, immutable rate-limit configuration and its descriptor lookup (pure).

Lookup follows envoyproxy/ratelimit exactly: each config node is known by its composite key
(`key_value`, or `key` when it has no value); the request's entries are walked down the tree,
at each level trying the exact `key_value` node, then the wildcard nodes in config order (`*`
anywhere in the value, each matching any run of characters), then the key-only node. A limit
applies only when the last entry lands on a node that has one; there is no backtracking.
A match also says which counter the request is charged to (share_threshold: every value
matching the wildcard shares one) and the stats key envoyproxy/ratelimit would report it under.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

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
    metric_key: str  # envoyproxy/ratelimit's stats key of the node, e.g. gateway.route_v1.plan.api_key
    windows: tuple[Window, ...] = ()
    unlimited: bool = False
    name: str | None = None
    shadow_mode: bool = False
    replaces: tuple[str, ...] = ()
    detailed_metric: bool = False
    retry_after: RetryAfterPolicy | None = None
    # Over the limit counts only when every quota-mode descriptor of the request is (Lyft's quota_mode).
    quota_mode: bool = False


def _empty() -> Mapping:
    return MappingProxyType({})


def composite_key(key: str, value: str) -> str:
    """envoyproxy/ratelimit's name for a node or a request entry: `key_value`, or `key`."""
    return f"{key}_{value}" if value else key


@dataclass(frozen=True, slots=True)
class Wildcard:
    """A node whose composite key holds `*`: each `*` matches any run of characters."""

    composite: str
    parts: tuple[str, ...]

    @classmethod
    def of(cls, composite: str) -> Wildcard:
        return cls(composite, tuple(composite.split("*")))

    def matches(self, text: str) -> bool:
        parts = self.parts
        first, last = parts[0], parts[-1]
        if not text.startswith(first) or not text.endswith(last):
            return False
        if len(text) < sum(len(p) for p in parts):
            return False
        middle = text[len(first) : len(text) - len(last)]
        for part in parts[1:-1]:
            at = middle.find(part)
            if at < 0:
                return False
            middle = middle[at + len(part) :]
        return True


@dataclass(frozen=True, slots=True)
class Children:
    nodes: Mapping[str, Node] = field(default_factory=_empty)  # by composite key
    wildcards: tuple[Wildcard, ...] = ()  # in config order; each one's node is in `nodes`

    def find(self, key: str, value: str) -> tuple[Node | None, str | None]:
        """The node an entry lands on, and how: its wildcard's composite, "" for the exact
        `key_value` node, None for the key-only node (or no node)."""
        text = f"{key}_{value}"
        node = self.nodes.get(text)
        if node is not None:
            return node, ""
        for wildcard in self.wildcards:
            if wildcard.matches(text):
                return self.nodes[wildcard.composite], wildcard.composite
        return self.nodes.get(key), None

    def __bool__(self) -> bool:
        return bool(self.nodes)


@dataclass(frozen=True, slots=True)
class Node:
    key: str
    value: str  # "" = any value
    rule: Rule | None
    children: Children = field(default_factory=Children)
    value_to_metric: bool = False
    share_threshold: bool = False
    metadata: Mapping[str, Any] | None = None

    @property
    def composite(self) -> str:
        return composite_key(self.key, self.value)


@dataclass(frozen=True, slots=True)
class Match:
    """What one request descriptor gets from the config."""

    rule: Rule
    counter_entries: tuple[tuple[str, str], ...]  # the entries its counters are keyed by
    stat_key: str  # envoyproxy/ratelimit's stats key for this request


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
    sources: tuple[str, ...] = ()  # every file merged into this domain (MERGE_DOMAIN_CONFIG)

    def rule_for(self, entries: Sequence[tuple[str, str]]) -> Rule | None:
        found = self.match(entries)
        return found.rule if found is not None else None

    def match(self, entries: Sequence[tuple[str, str]]) -> Match | None:
        children = self.children
        last = len(entries) - 1
        shared: dict[int, str] = {}  # entry index → wildcard value its counter uses instead
        by_value: list[str] = []  # the value_to_metric stats key, level by level
        rule: Rule | None = None
        for i, (key, value) in enumerate(entries):
            node, matched = children.find(key, value)
            if node is None:
                break
            if matched and node.share_threshold:
                shared[i] = matched.removeprefix(f"{key}_")
            by_value.append(_metric_segment(node, key, value, matched, shared.get(i)))
            if i == last:
                rule = node.rule
            if not node.children:
                break
            children = node.children
        if rule is None:
            return None
        counted = tuple((k, shared.get(i, v)) for i, (k, v) in enumerate(entries))
        if rule.detailed_metric:
            # Every entry's own value; with share_threshold the wildcard instead for those entries.
            segments = [
                f"{k}_{shared[i]}" if i in shared else (composite_key(k, v) if shared else f"{k}_{v}")
                for i, (k, v) in enumerate(entries)
            ]
        else:
            segments = by_value
        return Match(rule, counted, ".".join([self.domain, *segments]))

    def rules(self) -> list[Rule]:
        found: list[Rule] = []

        def walk(children: Children) -> None:
            for node in children.nodes.values():
                if node.rule is not None:
                    found.append(node.rule)
                walk(node.children)

        walk(self.children)
        return found


def _metric_segment(node: Node, key: str, value: str, matched: str | None, shared: str | None) -> str:
    """One level of envoyproxy/ratelimit's value_to_metric stats key (see Children.find for `matched`)."""
    if matched:  # through a wildcard
        if shared is not None:
            use = shared
        elif node.value_to_metric:
            use = value
        else:
            use = matched.removeprefix(f"{key}_")
    elif matched is not None:  # the exact key_value node
        use = value
    else:  # the key-only node
        use = value if node.value_to_metric else ""
    return composite_key(key, use)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    domains: Mapping[str, DomainConfig]
    sources: tuple[str, ...] = ()

    def domain(self, name: str) -> DomainConfig | None:
        return self.domains.get(name)


def with_unit_limits(config: RateLimitConfig, limits: Mapping[str, int]) -> RateLimitConfig:
    """A copy where every window of the given units has the given limit (for CLI flags)."""

    def fix_children(children: Children) -> Children:
        return replace(children, nodes=MappingProxyType({k: fix_node(n) for k, n in children.nodes.items()}))

    def fix_node(node: Node) -> Node:
        rule = node.rule
        if rule is not None:
            windows = tuple(replace(w, limit=limits.get(w.unit, w.limit)) for w in rule.windows)
            rule = replace(rule, windows=windows)
        return replace(node, rule=rule, children=fix_children(node.children))

    domains = {n: replace(d, children=fix_children(d.children)) for n, d in config.domains.items()}
    return RateLimitConfig(MappingProxyType(domains), config.sources)

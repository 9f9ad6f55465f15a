"""Validate one envoyproxy/ratelimit YAML document (plus our extensions) into the model.

Every problem raises ConfigError naming the file, the path in the document and what is
wrong, e.g. `limits.yaml: descriptors[0].rate_limit.unit: must be one of second, minute,
hour, day (got 'minutes')`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from ratelimit_service.config.model import (
    BACKOFFS,
    FAILURE_MODES,
    OVERRIDE_PREFIX,
    Children,
    DomainConfig,
    Node,
    RetryAfterPolicy,
    Rule,
)
from ratelimit_service.windows import ALGORITHMS, UNIT_SECONDS, Window

DOMAIN_FIELDS = ("domain", "descriptors", "failure_mode", "algorithm", "retry_after", "usage")
DESCRIPTOR_FIELDS = (
    "key", "value", "rate_limit", "rate_limits", "descriptors",
    "shadow_mode", "replaces", "detailed_metric", "retry_after",
)  # fmt: skip
LIMIT_FIELDS = ("unit", "requests_per_unit", "name", "unlimited", "algorithm")


class ConfigError(ValueError):
    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = source, path, message
        super().__init__(f"{source}: {path}: {message}" if path else f"{source}: {message}")


class DocumentParser:
    """One YAML document being validated: knows its file for error messages."""

    def __init__(self, source: str, default_algorithm: str = "sliding_window") -> None:
        self.source = source
        self.algorithm = default_algorithm
        self.names: dict[str, str] = {}  # rate limit name → path
        self.rules: list[Rule] = []

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(self.source, path, message)

    def mapping(self, raw: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.fail(path, f"must be a mapping, got {type(raw).__name__}")
        for name in raw:
            if name not in allowed:
                raise self.fail(
                    _join(path, str(name)), f"unknown field (expected one of {', '.join(allowed)})"
                )
        return raw

    def string(self, raw: Any, path: str, allow_empty: bool = False) -> str:
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise self.fail(path, f"must be a string, got {type(raw).__name__}")
        text = str(raw)
        if not text and not allow_empty:
            raise self.fail(path, "must be a non-empty string")
        return text

    def boolean(self, raw: Any, path: str) -> bool:
        if not isinstance(raw, bool):
            raise self.fail(path, f"must be true or false, got {raw!r}")
        return raw

    def choice(self, raw: Any, path: str, choices: Iterable[str]) -> str:
        choices = tuple(choices)
        if raw not in choices:
            raise self.fail(path, f"must be one of {', '.join(choices)} (got {raw!r})")
        return raw

    def listing(self, raw: Any, path: str) -> list[Any]:
        if not isinstance(raw, list):
            raise self.fail(path, f"must be a list, got {type(raw).__name__}")
        return raw

    def retry_after(self, raw: Any, path: str) -> RetryAfterPolicy:
        fields = self.mapping(raw, path, ("backoff", "jitter"))
        backoff = self.choice(fields.get("backoff", "exact"), _join(path, "backoff"), BACKOFFS)
        jitter = fields.get("jitter", 0.0)
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise self.fail(_join(path, "jitter"), f"must be a number in [0, 1), got {jitter!r}")
        return RetryAfterPolicy(backoff, float(jitter))

    def window(self, raw: Any, path: str) -> Window | None:
        """One rate_limit entry: a Window, or None for `unlimited: true`."""
        fields = self.mapping(raw, path, LIMIT_FIELDS)
        unlimited = self.boolean(fields.get("unlimited", False), _join(path, "unlimited"))
        if unlimited:
            mixed = [f for f in ("unit", "requests_per_unit", "algorithm") if f in fields]
            if mixed:
                raise self.fail(path, f"unlimited: true cannot be combined with {', '.join(mixed)}")
            return None
        for required in ("unit", "requests_per_unit"):
            if required not in fields:
                raise self.fail(path, f"missing {required} (or set unlimited: true)")
        unit = self.choice(fields["unit"], _join(path, "unit"), UNIT_SECONDS)
        limit = fields["requests_per_unit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise self.fail(_join(path, "requests_per_unit"), f"must be a positive integer, got {limit!r}")
        algorithm = self.choice(fields.get("algorithm", self.algorithm), _join(path, "algorithm"), ALGORITHMS)
        return Window(unit, limit, algorithm)

    def name(self, fields: dict[str, Any], path: str) -> str | None:
        if "name" not in fields:
            return None
        name = self.string(fields["name"], _join(path, "name"))
        if name in self.names:
            raise self.fail(
                _join(path, "name"), f"rate limit name {name!r} is already used at {self.names[name]}"
            )
        self.names[name] = path
        return name

    def rule(self, fields: dict[str, Any], path: str, metric_key: str) -> Rule | None:
        if "rate_limit" in fields and "rate_limits" in fields:
            raise self.fail(path, "use either rate_limit or rate_limits, not both")
        raw_limits: list[tuple[str, Any]] = []
        if "rate_limit" in fields:
            raw_limits = [(_join(path, "rate_limit"), fields["rate_limit"])]
        elif "rate_limits" in fields:
            entries = self.listing(fields["rate_limits"], _join(path, "rate_limits"))
            if not entries:
                raise self.fail(_join(path, "rate_limits"), "must list at least one rate limit")
            raw_limits = [(f"{path}.rate_limits[{i}]", raw) for i, raw in enumerate(entries)]
        if not raw_limits:
            for extra in ("shadow_mode", "replaces", "detailed_metric", "retry_after"):
                if extra in fields:
                    raise self.fail(_join(path, extra), "needs a rate_limit on the same descriptor")
            return None
        windows: list[Window] = []
        names = [self.name(raw, p) for p, raw in raw_limits if isinstance(raw, dict)]
        unlimited = False
        for limit_path, raw in raw_limits:
            window = self.window(raw, limit_path)
            if window is None:
                unlimited = True
            elif any(w.unit == window.unit for w in windows):
                raise self.fail(_join(limit_path, "unit"), f"a second {window.unit} window on one descriptor")
            else:
                windows.append(window)
        if unlimited and windows:
            raise self.fail(path, "unlimited: true cannot be combined with other rate limits")
        replaces = tuple(self._replaces(fields.get("replaces", []), _join(path, "replaces")))
        rule = Rule(
            path=path,
            metric_key=metric_key,
            windows=tuple(windows),
            unlimited=unlimited,
            name=next((n for n in names if n), None),
            shadow_mode=self.boolean(fields.get("shadow_mode", False), _join(path, "shadow_mode")),
            replaces=replaces,
            detailed_metric=self.boolean(
                fields.get("detailed_metric", False), _join(path, "detailed_metric")
            ),
            retry_after=self.retry_after(fields["retry_after"], _join(path, "retry_after"))
            if "retry_after" in fields
            else None,
        )
        self.rules.append(rule)
        return rule

    def _replaces(self, raw: Any, path: str) -> Iterable[str]:
        for i, entry in enumerate(self.listing(raw, path)):
            fields = self.mapping(entry, f"{path}[{i}]", ("name",))
            yield self.string(fields.get("name"), f"{path}[{i}].name")

    def children(self, raw: Any, path: str, parent_key: str) -> Children:
        exact: dict[tuple[str, str], Node] = {}
        wildcards: list[tuple[str, str, Node]] = []
        any_value: dict[str, Node] = {}
        seen: dict[tuple[str, str | None], str] = {}
        for i, item in enumerate(self.listing(raw, path)):
            item_path = f"{path}[{i}]"
            fields = self.mapping(item, item_path, DESCRIPTOR_FIELDS)
            key = self.string(fields.get("key", ""), _join(item_path, "key"))
            if key.startswith(OVERRIDE_PREFIX) and key[len(OVERRIDE_PREFIX) :] in UNIT_SECONDS:
                raise self.fail(_join(item_path, "key"), f"{key!r} is reserved for per-key limit overrides")
            value = self.string(fields["value"], _join(item_path, "value")) if "value" in fields else None
            if (key, value) in seen:
                what = f"key {key!r}" + (
                    f" with value {value!r}" if value is not None else " without a value"
                )
                raise self.fail(
                    _join(item_path, "key"), f"duplicate descriptor {what} (first at {seen[key, value]})"
                )
            seen[key, value] = item_path
            metric_key = _join(parent_key, f"{key}_{value}" if value is not None else key)
            node = Node(
                key,
                value,
                self.rule(fields, item_path, metric_key),
                self.children(fields.get("descriptors", []), _join(item_path, "descriptors"), metric_key),
            )
            if value is None:
                any_value[key] = node
            elif value.endswith("*"):
                wildcards.append((key, value[:-1], node))
            else:
                exact[key, value] = node
        return Children(MappingProxyType(exact), tuple(wildcards), MappingProxyType(any_value))

    def check_replaces(self) -> None:
        for rule in self.rules:
            for i, target in enumerate(rule.replaces):
                path = f"{rule.path}.replaces[{i}].name"
                if target == rule.name:
                    raise self.fail(path, f"{target!r} is this descriptor's own rate limit")
                if target not in self.names:
                    raise self.fail(path, f"{target!r} matches no named rate limit in this domain")

    def usage(self, raw: Any, path: str) -> tuple[tuple[str, str], ...]:
        fields = self.mapping(raw, path, ("descriptor",))
        entries = self.listing(fields.get("descriptor", []), _join(path, "descriptor"))
        found = []
        for i, entry in enumerate(entries):
            item = self.mapping(entry, f"{path}.descriptor[{i}]", ("key", "value"))
            key = self.string(item.get("key", ""), f"{path}.descriptor[{i}].key")
            found.append((key, self.string(item.get("value", ""), f"{path}.descriptor[{i}].value")))
        if not found:
            raise self.fail(_join(path, "descriptor"), "must list at least one {key, value} entry")
        return tuple(found)

    def domain(self, raw: Any) -> DomainConfig:
        fields = self.mapping(raw, "", DOMAIN_FIELDS)
        if "domain" not in fields:
            raise self.fail("domain", "missing (every config names its domain)")
        domain = self.string(fields["domain"], "domain")
        self.algorithm = self.choice(fields.get("algorithm", self.algorithm), "algorithm", ALGORITHMS)
        children = self.children(fields.get("descriptors", []), "descriptors", "")
        self.check_replaces()
        config = DomainConfig(
            domain,
            self.source,
            children,
            self.choice(fields.get("failure_mode", "allow"), "failure_mode", FAILURE_MODES),
        )
        if "retry_after" in fields:
            config = replace(config, retry_after=self.retry_after(fields["retry_after"], "retry_after"))
        if "usage" in fields:
            config = replace(config, usage_descriptor=self.usage(fields["usage"], "usage"))
        return config


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name

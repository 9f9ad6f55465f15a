"""Validate one envoyproxy/ratelimit YAML document (plus our extensions) into the model.

Acceptance follows envoyproxy/ratelimit's loader (src/config/config_impl.go): every key it
knows is accepted at any level (it checks names, not places; a key where it means nothing is
ignored, with a warning here), string fields take any scalar's text, and it refuses the same
things: an empty domain or key, a duplicate composite key, a bad unit, a unit with
`unlimited`, an empty `replaces` name or one naming its own limit, `share_threshold` without
a wildcard, an unknown or non-string key, a list of non-maps. Our extensions (algorithm,
several windows, retry_after, failure_mode, usage) are accepted only where they mean something.
Every problem raises ConfigError naming the file, the path in the document and what is wrong,
e.g. `limits.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'minutes' (…)`.
"""

from __future__ import annotations

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
    Wildcard,
    composite_key,
)
from ratelimit_service.windows import ALGORITHMS, UNIT_SECONDS, Window

# Every key envoyproxy/ratelimit accepts (anywhere in a document).
LYFT_KEYS = frozenset({
    "domain", "key", "value", "descriptors", "rate_limit", "unit", "requests_per_unit", "unlimited",
    "shadow_mode", "quota_mode", "name", "replaces", "detailed_metric", "value_to_metric",
    "share_threshold", "metadata",
})  # fmt: skip
# Where each Lyft key means something; elsewhere it is ignored (as Lyft does), with a warning.
LYFT_DOMAIN = frozenset({"domain", "descriptors"})
LYFT_DESCRIPTOR = frozenset({
    "key", "value", "rate_limit", "descriptors", "shadow_mode", "quota_mode", "detailed_metric",
    "value_to_metric", "share_threshold", "metadata",
})  # fmt: skip
LYFT_LIMIT = frozenset({"unit", "requests_per_unit", "unlimited", "name", "replaces"})
# Our extensions, by level (docs/ratelimit.md). Their contents are validated by their parsers.
DOMAIN_EXTENSIONS = frozenset({"failure_mode", "algorithm", "retry_after", "usage"})
DESCRIPTOR_EXTENSIONS = frozenset({"rate_limits", "retry_after"})
LIMIT_EXTENSIONS = frozenset({"algorithm"})
EXTENSIONS = DOMAIN_EXTENSIONS | DESCRIPTOR_EXTENSIONS | LIMIT_EXTENSIONS
BOOLEAN_FIELDS = ("shadow_mode", "quota_mode", "detailed_metric", "value_to_metric", "share_threshold")
MAX_REQUESTS = 2**32 - 1  # requests_per_unit is a uint32


class ConfigError(ValueError):
    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = source, path, message
        super().__init__(f"{source}: {path}: {message}" if path else f"{source}: {message}")


class DocumentParser:
    """One YAML document being validated: knows its file for error messages."""

    def __init__(self, source: str, default_algorithm: str = "sliding_window") -> None:
        self.source = source
        self.algorithm = default_algorithm
        self.warnings: list[str] = []

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(self.source, path, message)

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{self.source}: {path}: {message}")

    # -- envoyproxy/ratelimit's key check, over the whole document ------------------------------

    def check_keys(self, raw: Any, path: str) -> None:
        """Lyft's validateYamlKeys: string keys it knows (or ours), lists hold only maps."""
        if isinstance(raw, list):
            for i, item in enumerate(raw):
                if not isinstance(item, dict):
                    raise self.fail(f"{path}[{i}]", f"list of type other than map: {item!r}")
                self.check_keys(item, f"{path}[{i}]")
            return
        if not isinstance(raw, dict):
            return
        for key, value in raw.items():
            if not isinstance(key, str):
                raise self.fail(path, f"key is not of type string: {key!r}")
            if key not in LYFT_KEYS and key not in EXTENSIONS:
                raise self.fail(_join(path, key), "unknown key")
            if key != "metadata" and key not in EXTENSIONS:
                self.check_keys(value, _join(path, key))

    def fields(self, raw: Any, path: str, lyft: frozenset[str], ours: frozenset[str]) -> dict[str, Any]:
        """A mapping at one level: our extensions only where they belong, Lyft's misplaced keys ignored."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail(path, f"must be a mapping, got {type(raw).__name__}")
        for name in raw:
            if name in ours or name in lyft:
                continue
            if not isinstance(name, str):
                raise self.fail(path, f"key is not of type string: {name!r}")
            if name in LYFT_KEYS:
                hint = " (it belongs inside rate_limit)" if name == "replaces" else ""
                self.warn(
                    _join(path, name), f"means nothing here{hint}; ignored, as envoyproxy/ratelimit does"
                )
            elif name in EXTENSIONS:
                raise self.fail(_join(path, name), "not allowed here")
            else:  # inside one of our extensions, which Lyft's key check does not walk
                raise self.fail(_join(path, name), "unknown key")
        return raw

    # -- scalars, with yaml.v2's rules ----------------------------------------------------------

    def text(self, raw: Any, path: str) -> str:
        """A string field: any scalar's text (the loader keeps it as written), null → ''."""
        if raw is None:
            return ""
        if isinstance(raw, dict | list):
            raise self.fail(path, f"must be a string, got a {'mapping' if isinstance(raw, dict) else 'list'}")
        return str(raw)

    def flag(self, raw: Any, path: str) -> bool:
        if raw is None:
            return False
        if not isinstance(raw, bool):
            raise self.fail(path, f"must be true or false, got {raw!r}")
        return raw

    def listing(self, raw: Any, path: str) -> list[Any]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise self.fail(path, f"must be a list, got {type(raw).__name__}")
        return raw

    def choice(self, raw: Any, path: str, choices: tuple[str, ...]) -> str:
        if raw not in choices:
            raise self.fail(path, f"must be one of {', '.join(choices)} (got {raw!r})")
        return raw

    def retry_after(self, raw: Any, path: str) -> RetryAfterPolicy:
        fields = self.strict(raw, path, ("backoff", "jitter"))
        backoff = self.choice(fields.get("backoff", "exact"), _join(path, "backoff"), BACKOFFS)
        jitter = fields.get("jitter", 0.0)
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise self.fail(_join(path, "jitter"), f"must be a number in [0, 1), got {jitter!r}")
        return RetryAfterPolicy(backoff, float(jitter))

    def strict(self, raw: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """A mapping of one of our extensions: exactly its own fields."""
        if not isinstance(raw, dict):
            raise self.fail(path, f"must be a mapping, got {type(raw).__name__}")
        for name in raw:
            if name not in allowed:
                raise self.fail(
                    _join(path, str(name)), f"unknown field (expected one of {', '.join(allowed)})"
                )
        return raw

    # -- rate limits ----------------------------------------------------------------------------

    def window(self, fields: dict[str, Any], path: str) -> Window | None:
        """One rate_limit block: a Window, or None for `unlimited: true`."""
        unlimited = self.flag(fields.get("unlimited"), _join(path, "unlimited"))
        unit = self.text(fields.get("unit"), _join(path, "unit")).lower()
        if unlimited:
            if unit in UNIT_SECONDS:
                raise self.fail(_join(path, "unit"), "should not specify rate limit unit when unlimited")
            return None
        if unit not in UNIT_SECONDS:
            raise self.fail(
                _join(path, "unit"),
                f"invalid rate limit unit {fields.get('unit')!r} (one of {', '.join(UNIT_SECONDS)})",
            )
        limit = fields.get("requests_per_unit", 0)
        if limit is None:
            limit = 0
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_REQUESTS:
            raise self.fail(
                _join(path, "requests_per_unit"),
                f"must be a whole number from 0 to {MAX_REQUESTS}, got {limit!r}",
            )
        algorithm = self.choice(fields.get("algorithm", self.algorithm), _join(path, "algorithm"), ALGORITHMS)
        return Window(unit, limit, algorithm)

    def replaces(self, raw: Any, path: str, own_name: str) -> list[str]:
        names = []
        for i, entry in enumerate(self.listing(raw, path)):
            fields = self.fields(entry, f"{path}[{i}]", frozenset({"name"}), frozenset())
            name = self.text(fields.get("name"), f"{path}[{i}].name")
            if not name:
                raise self.fail(f"{path}[{i}].name", "should not have an empty replaces entry")
            if name == own_name:
                raise self.fail(f"{path}[{i}].name", "replaces should not contain name of same descriptor")
            names.append(name)
        return names

    def rule(self, fields: dict[str, Any], path: str, metric_key: str, flags: dict[str, bool]) -> Rule | None:
        blocks: list[tuple[str, dict[str, Any]]] = []
        if "rate_limit" in fields and "rate_limits" in fields:
            raise self.fail(path, "use either rate_limit or rate_limits, not both")
        if fields.get("rate_limit") is not None:
            limit_path = _join(path, "rate_limit")
            blocks = [
                (limit_path, self.fields(fields["rate_limit"], limit_path, LYFT_LIMIT, LIMIT_EXTENSIONS))
            ]
        elif "rate_limits" in fields:
            entries = self.listing(fields["rate_limits"], _join(path, "rate_limits"))
            if not entries:
                raise self.fail(_join(path, "rate_limits"), "must list at least one rate limit")
            for i, raw in enumerate(entries):
                limit_path = f"{path}.rate_limits[{i}]"
                blocks.append((limit_path, self.fields(raw, limit_path, LYFT_LIMIT, LIMIT_EXTENSIONS)))
        if not blocks:
            return None
        windows: list[Window] = []
        names: list[str] = []
        replaced: list[str] = []
        unlimited = False
        for limit_path, block in blocks:
            name = self.text(block.get("name"), _join(limit_path, "name"))
            replaced += self.replaces(block.get("replaces"), _join(limit_path, "replaces"), name)
            names += [name] if name else []
            window = self.window(block, limit_path)
            if window is None:
                unlimited = True
            elif any(w.unit == window.unit for w in windows):
                raise self.fail(_join(limit_path, "unit"), f"a second {window.unit} window on one descriptor")
            else:
                windows.append(window)
        if unlimited and windows:
            raise self.fail(path, "unlimited: true cannot be combined with other rate limits")
        return Rule(
            path=path,
            metric_key=metric_key,
            windows=tuple(windows),
            unlimited=unlimited,
            name=names[0] if names else None,
            shadow_mode=flags["shadow_mode"],
            replaces=tuple(replaced),
            detailed_metric=flags["detailed_metric"],
            retry_after=self.retry_after(fields["retry_after"], _join(path, "retry_after"))
            if "retry_after" in fields
            else None,
            quota_mode=flags["quota_mode"],
        )

    # -- descriptors ----------------------------------------------------------------------------

    def node(self, raw: Any, path: str, parent_key: str) -> Node:
        fields = self.fields(raw, path, LYFT_DESCRIPTOR, DESCRIPTOR_EXTENSIONS)
        key = self.text(fields.get("key"), _join(path, "key"))
        if not key:
            raise self.fail(_join(path, "key"), "descriptor has empty key")
        if key.startswith(OVERRIDE_PREFIX) and key[len(OVERRIDE_PREFIX) :] in UNIT_SECONDS:
            raise self.fail(_join(path, "key"), f"{key!r} is reserved for per-key limit overrides")
        value = self.text(fields.get("value"), _join(path, "value"))
        composite = composite_key(key, value)
        # Checked on every descriptor, limit or not (Lyft's YAML decoding refuses a bad one anywhere).
        flags = {name: self.flag(fields.get(name), _join(path, name)) for name in BOOLEAN_FIELDS}
        share = flags["share_threshold"]
        if share and "*" not in composite:
            raise self.fail(
                _join(path, "share_threshold"),
                f"share_threshold can only be used with wildcard values (containing '*'), but found key "
                f"'{composite}'",
            )
        metadata = fields.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise self.fail(_join(path, "metadata"), f"must be a mapping, got {type(metadata).__name__}")
        metric_key = f"{parent_key}.{composite}"
        return Node(
            key,
            value,
            self.rule(fields, path, metric_key, flags),
            self.children(fields.get("descriptors"), _join(path, "descriptors"), metric_key),
            value_to_metric=flags["value_to_metric"],
            share_threshold=share,
            metadata=MappingProxyType(dict(metadata)) if metadata else None,
        )

    def children(self, raw: Any, path: str, parent_key: str, into: Children | None = None) -> Children:
        """A descriptor list (added to `into`'s nodes when merging domains)."""
        nodes: dict[str, Node] = dict(into.nodes) if into else {}
        wildcards: list[Wildcard] = list(into.wildcards) if into else []
        for i, item in enumerate(self.listing(raw, path)):
            node = self.node(item, f"{path}[{i}]", parent_key)
            if node.composite in nodes:
                raise self.fail(
                    f"{path}[{i}]", f"duplicate descriptor composite key '{parent_key}.{node.composite}'"
                )
            nodes[node.composite] = node
            if "*" in node.composite:
                wildcards.append(Wildcard.of(node.composite))
        return Children(MappingProxyType(nodes), tuple(wildcards))

    def usage(self, raw: Any, path: str) -> tuple[tuple[str, str], ...]:
        fields = self.strict(raw, path, ("descriptor",))
        entries = self.listing(fields.get("descriptor"), _join(path, "descriptor"))
        found = []
        for i, entry in enumerate(entries):
            item = self.strict(entry, f"{path}.descriptor[{i}]", ("key", "value"))
            key = self.text(item.get("key"), f"{path}.descriptor[{i}].key")
            if not key:
                raise self.fail(f"{path}.descriptor[{i}].key", "must be a non-empty string")
            found.append((key, self.text(item.get("value"), f"{path}.descriptor[{i}].value")))
        if not found:
            raise self.fail(_join(path, "descriptor"), "must list at least one {key, value} entry")
        return tuple(found)

    def domain(self, raw: Any, merge_into: DomainConfig | None = None) -> DomainConfig:
        if not isinstance(raw, dict):
            raise self.fail("", f"a config document must be a mapping, got {type(raw).__name__}")
        self.check_keys(raw, "")
        fields = self.fields(raw, "", LYFT_DOMAIN, DOMAIN_EXTENSIONS)
        domain = self.text(fields.get("domain"), "domain")
        if not domain:
            raise self.fail("domain", "config file cannot have empty domain")
        self.algorithm = self.choice(fields.get("algorithm", self.algorithm), "algorithm", ALGORITHMS)
        if merge_into is not None:
            return self.merged(merge_into, fields)
        config = DomainConfig(
            domain,
            self.source,
            self.children(fields.get("descriptors"), "descriptors", domain),
            self.choice(fields.get("failure_mode", "allow"), "failure_mode", FAILURE_MODES),
            sources=(self.source,),
        )
        if "retry_after" in fields:
            config = replace(config, retry_after=self.retry_after(fields["retry_after"], "retry_after"))
        if "usage" in fields:
            config = replace(config, usage_descriptor=self.usage(fields["usage"], "usage"))
        return config

    def merged(self, first: DomainConfig, fields: dict[str, Any]) -> DomainConfig:
        """MERGE_DOMAIN_CONFIG: this file's top-level descriptors join the domain's (Lyft's patching)."""
        for setting in ("failure_mode", "retry_after", "usage"):
            if setting in fields:
                self.warn(setting, f"ignored: the domain's settings come from {first.source}")
        children = self.children(fields.get("descriptors"), "descriptors", first.domain, into=first.children)
        return replace(first, children=children, sources=(*first.sources, self.source))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name

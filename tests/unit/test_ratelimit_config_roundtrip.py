"""The config loader against random Lyft-format documents (hypothesis): every valid document
loads into exactly the tree it describes and every rule is reachable by its own descriptor;
each mutation envoyproxy/ratelimit refuses is refused here too, naming the file."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit_service.config import ConfigError, DomainConfig, Rule, parse_text
from ratelimit_service.config.model import Children

SOURCE = "gen.yaml"
MAX_DEPTH = 3
PER_LEVEL = 4
UNITS = ("second", "minute", "hour", "day", "week", "month", "year")
NODE_FLAGS = ("shadow_mode", "quota_mode", "detailed_metric", "value_to_metric")
RULE_FLAGS = ("shadow_mode", "quota_mode", "detailed_metric")
PROBE = "x"  # the request value sent to a key-only node

# Small alphabets so that composite keys collide (`a_b` vs `a` + `b`) and values look like YAML
# numbers (`1_1`, `1.`), which must still load as the text written.
KEYS = st.text(alphabet="ab_", min_size=1, max_size=3)
VALUES = st.text(alphabet="ab_x*1.", min_size=1, max_size=4)
NAMES = st.text(alphabet="nm1", min_size=1, max_size=2)
DOMAINS = st.text(alphabet="ab1._", min_size=1, max_size=5)
FLAG_SETTINGS = st.sampled_from((None, None, False, True))  # None: the flag is left out
# A generated node with the path to it: (node, its siblings) from the top level down.
NodePath = tuple[tuple[dict[str, Any], list[dict[str, Any]]], ...]


def composite_of(node: dict[str, Any]) -> str:
    """envoyproxy/ratelimit's composite key of a generated descriptor."""
    return f"{node['key']}_{node['value']}" if node.get("value") else node["key"]


def wildcard_matches(composite: str, text: str) -> bool:
    """Our own reading of Lyft's wildcard (each `*` any run of characters), independent of the model's."""
    return re.fullmatch(".*".join(re.escape(part) for part in composite.split("*")), text) is not None


@st.composite
def any_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.integers(0, 2 ** len(word) - 1))  # one draw, not one per letter: cheaper
    return "".join(c.upper() if flips >> i & 1 else c for i, c in enumerate(word))


@st.composite
def rate_limits(draw: st.DrawFn) -> dict[str, Any]:
    """A valid rate_limit block: a unit (any case) and a limit, or `unlimited: true`."""
    block: dict[str, Any] = {}
    if draw(st.integers(0, 4)) == 0:
        block["unlimited"] = True
    else:
        block["unit"] = draw(any_case(draw(st.sampled_from(UNITS))))
        block["requests_per_unit"] = draw(st.integers(0, 10**6))
        if draw(st.booleans()):
            block["unlimited"] = False
    name = draw(st.none() | NAMES)
    if name is not None:
        block["name"] = name
    if draw(st.booleans()):
        others = NAMES.filter(lambda n: n != name)
        block["replaces"] = [{"name": n} for n in draw(st.lists(others, min_size=1, max_size=2))]
    return block


@st.composite
def descriptor_heads(draw: st.DrawFn) -> dict[str, Any]:
    """One descriptor without its children."""
    node: dict[str, Any] = {"key": draw(KEYS)}
    if draw(st.booleans()):
        node["value"] = draw(VALUES)
    if draw(st.booleans()):
        node["rate_limit"] = draw(rate_limits())
    for flag in NODE_FLAGS:
        setting = draw(FLAG_SETTINGS)
        if setting is not None:
            node[flag] = setting
    if "*" in composite_of(node):
        setting = draw(FLAG_SETTINGS)
        if setting is not None:
            node["share_threshold"] = setting
    return node


@st.composite
def descriptor_lists(draw: st.DrawFn, depth: int = 1) -> list[dict[str, Any]]:
    """One level: composite keys unique (Lyft refuses duplicates), children up to MAX_DEPTH."""
    heads = draw(st.lists(descriptor_heads(), max_size=PER_LEVEL, unique_by=composite_of))
    nodes = []
    for head in heads:
        node = dict(head)
        if depth < MAX_DEPTH and draw(st.integers(0, 2)) > 0:
            node["descriptors"] = draw(descriptor_lists(depth + 1))
        nodes.append(node)
    return nodes


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"domain": draw(DOMAINS)}
    if draw(st.integers(0, 5)) > 0:
        doc["descriptors"] = draw(descriptor_lists())
    return doc


def load(doc: dict[str, Any]) -> DomainConfig:
    return parse_text(yaml.safe_dump(doc, sort_keys=False), SOURCE)[0]


# -- the loaded model back to plain data, and the document normalised to the same shape --------


def rule_as_dict(rule: Rule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {
        "path": rule.path,
        "metric_key": rule.metric_key,
        "windows": [(w.unit, w.limit, w.algorithm) for w in rule.windows],
        "unlimited": rule.unlimited,
        "name": rule.name,
        "replaces": rule.replaces,
        "shadow_mode": rule.shadow_mode,
        "quota_mode": rule.quota_mode,
        "detailed_metric": rule.detailed_metric,
        "retry_after": rule.retry_after,
    }


def children_as_dict(children: Children) -> dict[str, Any]:
    """A level as {nodes: composite → node, wildcards: [(composite, parts)]}."""
    nodes = {}
    for composite, node in children.nodes.items():
        nodes[composite] = {
            "key": node.key,
            "value": node.value,
            "value_to_metric": node.value_to_metric,
            "share_threshold": node.share_threshold,
            "metadata": node.metadata,
            "rule": rule_as_dict(node.rule),
            "children": children_as_dict(node.children),
        }
    return {"nodes": nodes, "wildcards": [(w.composite, w.parts) for w in children.wildcards]}


def model_as_dict(config: DomainConfig) -> dict[str, Any]:
    return {
        "domain": config.domain,
        "source": config.source,
        "sources": config.sources,
        "failure_mode": config.failure_mode,
        "children": children_as_dict(config.children),
    }


def expected_rule(node: dict[str, Any], path: str, metric_key: str) -> dict[str, Any] | None:
    block = node.get("rate_limit")
    if block is None:
        return None
    unlimited = block.get("unlimited", False)
    windows = [] if unlimited else [(block["unit"].lower(), block["requests_per_unit"], "sliding_window")]
    return {
        "path": path,
        "metric_key": metric_key,
        "windows": windows,
        "unlimited": unlimited,
        "name": block.get("name"),
        "replaces": tuple(entry["name"] for entry in block.get("replaces", [])),
        **{flag: node.get(flag, False) for flag in RULE_FLAGS},
        "retry_after": None,
    }


def expected_children(nodes: list[dict[str, Any]], path: str, parent_key: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    wildcards = []
    for i, node in enumerate(nodes):
        composite = composite_of(node)
        node_path = f"{path}[{i}]"
        metric_key = f"{parent_key}.{composite}"
        found[composite] = {
            "key": node["key"],
            "value": node.get("value", ""),
            "value_to_metric": node.get("value_to_metric", False),
            "share_threshold": node.get("share_threshold", False),
            "metadata": None,
            "rule": expected_rule(node, node_path, metric_key),
            "children": expected_children(
                node.get("descriptors", []), f"{node_path}.descriptors", metric_key
            ),
        }
        if "*" in composite:
            wildcards.append((composite, tuple(composite.split("*"))))
    return {"nodes": found, "wildcards": wildcards}


def expected_model(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "domain": doc["domain"],
        "source": SOURCE,
        "sources": (SOURCE,),
        "failure_mode": "allow",
        "children": expected_children(doc.get("descriptors", []), "descriptors", doc["domain"]),
    }


@settings(max_examples=150, deadline=None)
@given(doc=documents())
def test_a_valid_document_loads_into_exactly_its_tree(doc: dict[str, Any]) -> None:
    assert model_as_dict(load(doc)) == expected_model(doc)


# -- every limited node is what its own descriptor matches ---------------------------------------


def limited_paths(nodes: list[dict[str, Any]], path: NodePath = ()) -> Iterator[NodePath]:
    """Every node with a rate_limit, as its path of (node, siblings) from the top."""
    for node in nodes:
        here = (*path, (node, nodes))
        if "rate_limit" in node:
            yield here
        yield from limited_paths(node.get("descriptors", []), here)


def reference_find(siblings: list[dict[str, Any]], key: str, value: str) -> dict[str, Any] | None:
    """Lyft's precedence, restated: the exact `key_value` node, else the first wildcard node (in
    document order) matching `key_value`, else the key-only node."""
    text = f"{key}_{value}"
    for other in siblings:
        if composite_of(other) == text:
            return other
    for other in siblings:
        if "*" in composite_of(other) and wildcard_matches(composite_of(other), text):
            return other
    return next((other for other in siblings if composite_of(other) == key), None)


def request_for(path: NodePath) -> list[tuple[str, str]] | None:
    """The descriptor aimed at the path's last node: each node's value (`*` filled in with the
    probe, the probe for a key-only node). None where the precedence rules send it elsewhere
    (another sibling's exact key_value or an earlier wildcard takes it)."""
    entries = []
    for node, siblings in path:
        value = node.get("value", "").replace("*", PROBE) or PROBE
        if reference_find(siblings, node["key"], value) is not node:
            return None
        entries.append((node["key"], value))
    return entries


def counted_entries(path: NodePath, entries: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """share_threshold: every value a wildcard matches is counted as the wildcard itself."""
    return tuple(
        (key, node["value"] if node.get("share_threshold") else value)
        for (node, _), (key, value) in zip(path, entries, strict=True)
    )


def model_node_rule(config: DomainConfig, path: NodePath) -> Rule:
    """The loaded rule of the path's last node, found by composite keys (not by matching)."""
    children = config.children
    rule = None
    for node, _ in path:
        found = children.nodes[composite_of(node)]
        rule, children = found.rule, found.children
    assert rule is not None
    return rule


@settings(max_examples=150, deadline=None)
@given(doc=documents())
def test_every_limited_node_is_matched_by_its_own_descriptor(doc: dict[str, Any]) -> None:
    config = load(doc)
    for path in limited_paths(doc.get("descriptors", [])):
        entries = request_for(path)
        if entries is None:
            continue
        match = config.match(entries)
        assert match is not None, entries
        assert match.rule is model_node_rule(config, path), entries
        assert match.counter_entries == counted_entries(path, entries), entries


# -- what Lyft refuses is refused, naming the file -------------------------------------------


def descriptor_slots(doc: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Every descriptor list of the document (created empty where a node has none)."""
    slots = [doc.setdefault("descriptors", [])]

    def walk(nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            slots.append(node.setdefault("descriptors", []))
            walk(node["descriptors"])

    walk(list(slots[0]))
    return slots


def duplicates_of(composite: str) -> list[dict[str, Any]]:
    """Every descriptor with this composite key: `key: a_b` or `key: a, value: b`, ..."""
    found: list[dict[str, Any]] = [{"key": composite}]
    for i, char in enumerate(composite):
        if char == "_" and 0 < i < len(composite) - 1:
            found.append({"key": composite[:i], "value": composite[i + 1 :]})
    return found


MUTATIONS = (
    "empty key",
    "unknown key",
    "unit with unlimited",
    "replaces itself",
    "share_threshold without *",
    "duplicate composite key",
)


@st.composite
def refused_documents(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """A valid document with one mutation Lyft refuses: (document, mutation, expected message).

    The mutation is a new descriptor inserted anywhere in the tree or, where it can be, a change
    to an existing one (which may have children and flags of its own)."""
    doc = copy.deepcopy(draw(documents()))
    slots = descriptor_slots(doc)
    slot = draw(st.sampled_from(slots))
    target = draw(st.none() | st.integers(0, len(slot) - 1)) if slot else None
    mutation = draw(st.sampled_from(MUTATIONS))
    bad: dict[str, Any]  # the new descriptor
    patch: dict[str, Any] | None = None  # the change to slot[target]; None: insert `bad`
    if mutation == "empty key":
        bad = draw(st.sampled_from([{"key": ""}, {"key": None}, {"value": "v"}]))
        patch = {"key": draw(st.sampled_from(["", None]))}
        message = "descriptor has empty key"
    elif mutation == "unknown key":
        unknown = draw(st.sampled_from(["bogus", "rate_limitt", "Key", "descriptor", "units"]))
        where = draw(st.sampled_from(["domain", "descriptor", "rate_limit", "replaces"]))
        bad = {"key": draw(KEYS), "rate_limit": {"unit": "second", "requests_per_unit": 1}}
        if where == "domain":
            doc[unknown] = 1
        elif where == "descriptor":
            bad[unknown] = 1
            patch = {unknown: 1}
        elif where == "rate_limit":
            bad["rate_limit"][unknown] = 1
        else:
            bad["rate_limit"]["replaces"] = [{"name": "other", unknown: 1}]
        message = "unknown key"
    elif mutation == "unit with unlimited":
        unit = draw(any_case(draw(st.sampled_from(UNITS))))
        bad = {"key": draw(KEYS), "rate_limit": {"unlimited": True, "unit": unit}}
        if draw(st.booleans()):
            bad["rate_limit"]["requests_per_unit"] = draw(st.integers(0, 10))
        patch = {"rate_limit": bad["rate_limit"]}
        message = "should not specify rate limit unit when unlimited"
    elif mutation == "replaces itself":
        name = draw(NAMES)
        others = draw(st.lists(NAMES.filter(lambda n: n != name), max_size=2))
        at = draw(st.integers(0, len(others)))
        replaces = [{"name": n} for n in [*others[:at], name, *others[at:]]]
        bad = {"key": draw(KEYS), "rate_limit": {"unit": "minute", "requests_per_unit": 1, "name": name}}
        bad["rate_limit"]["replaces"] = replaces
        patch = {"rate_limit": bad["rate_limit"]}
        message = "replaces should not contain name of same descriptor"
    elif mutation == "share_threshold without *":
        bad = {"key": draw(KEYS), "share_threshold": True}
        value = draw(st.none() | st.text(alphabet="ab_x1.", min_size=1, max_size=4))
        if value is not None:
            bad["value"] = value
        if target is not None and "*" not in composite_of(slot[target]):
            patch = {"share_threshold": True}
        message = "share_threshold can only be used with wildcard values"
    else:
        if not slot:
            slot.append(draw(descriptor_heads()))
        twin = draw(st.sampled_from(slot))
        bad = draw(st.sampled_from(duplicates_of(composite_of(twin))))
        target = None  # a duplicate is always a new sibling
        message = "duplicate descriptor composite key"
    if target is not None and patch is not None:
        slot[target] = {**slot[target], **patch}
    else:
        slot.insert(draw(st.integers(0, len(slot))), bad)
    return doc, mutation, message


@settings(max_examples=150, deadline=None)
@given(case=refused_documents())
def test_each_mutation_lyft_refuses_is_refused_naming_the_file(case: tuple[dict[str, Any], str, str]) -> None:
    doc, mutation, message = case
    text = yaml.safe_dump(doc, sort_keys=False)
    try:
        parse_text(text, SOURCE)
    except ConfigError as error:
        assert str(error).startswith(f"{SOURCE}: "), str(error)
        assert message in str(error), (mutation, str(error))
    else:
        raise AssertionError(f"{mutation}: accepted\n{text}")

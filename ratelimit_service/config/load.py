"""Load config files: YAML documents (one domain each) from a file or a folder of files.

YAML is read the way envoyproxy/ratelimit's yaml.v2 reads it where that matters: string fields
(domain, key, value, name, unit) keep the scalar as written (`value: 1.10` is "1.10", not 1.1),
and a key given twice keeps its last value (with a warning) instead of failing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ratelimit_service.config.model import DomainConfig, RateLimitConfig
from ratelimit_service.config.parse import ConfigError, DocumentParser

log = logging.getLogger(__name__)
STRING_FIELDS = frozenset({"domain", "key", "value", "name", "unit"})
NULL_TAG = "tag:yaml.org,2002:null"


class _Loader(yaml.SafeLoader):
    """SafeLoader with yaml.v2's string fields and last-wins duplicate keys (noted in `duplicates`)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                self.duplicates.append(
                    f"line {key_node.start_mark.line + 1}: {key!r} given twice, the last one counts"
                )
            seen.add(key)
            if (
                key in STRING_FIELDS
                and isinstance(value_node, yaml.ScalarNode)
                and value_node.tag != NULL_TAG
            ):
                mapping[key] = value_node.value
        return mapping


def read_documents(text: str, source: str) -> tuple[list[Any], list[str]]:
    loader = _Loader(text)
    try:
        documents = []
        while loader.check_data():
            documents.append(loader.get_data())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, where, f"invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return [d for d in documents if d is not None], [f"{source}: {d}" for d in loader.duplicates]


def parse_text(
    text: str, source: str, known: dict[str, DomainConfig] | None = None, merge: bool = False
) -> list[DomainConfig]:
    """Every YAML document in `text` is one domain (envoyproxy/ratelimit reads only the first)."""
    documents, warnings = read_documents(text, source)
    if not documents:
        raise ConfigError(source, "", "empty config (expected a document with a domain)")
    for warning in warnings:
        log.warning("rate-limit config: %s", warning)
    known = known if known is not None else {}
    domains = []
    for i, document in enumerate(documents):
        label = source if len(documents) == 1 else f"{source} (document {i + 1})"
        parser = DocumentParser(label)
        name = document.get("domain") if isinstance(document, dict) else None
        earlier = known.get(str(name)) if name is not None else None
        if earlier is not None and not merge:
            raise ConfigError(
                label, "domain", f"duplicate domain '{name}' in config file (also in {earlier.source})"
            )
        domain = parser.domain(document, merge_into=earlier)
        for warning in parser.warnings:
            log.warning("rate-limit config: %s", warning)
        known[domain.domain] = domain
        domains.append(domain)
    return domains


def config_files(path: Path) -> list[Path]:
    """A file, or every *.yaml / *.yml under a folder, subfolders too, in name order.

    Files and folders whose names start with a dot are skipped (editors' swap files, and the
    `..data` / `..2026_…` folders of a Kubernetes ConfigMap, whose files appear once at the top).
    """
    if not path.is_dir():
        return [path]
    found = []
    for folder, subfolders, files in os.walk(path, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found += [Path(folder, f) for f in files if f.endswith((".yaml", ".yml")) and not f.startswith(".")]
    return sorted(found)


def load_config(path: Path, merge_domains: bool = False) -> RateLimitConfig:
    """Every domain in the file(s); several files for one domain only with `merge_domains`
    (envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG), which joins their top-level descriptors."""
    files = config_files(path)
    if not files:
        raise ConfigError(str(path), "", "no *.yaml files in this folder")
    domains: dict[str, DomainConfig] = {}
    for file in files:
        try:
            text = file.read_text()
        except OSError as exc:
            raise ConfigError(str(file), "", f"cannot read: {exc.strerror or exc}") from None
        parse_text(text, str(file), domains, merge_domains)
    return RateLimitConfig(MappingProxyType(domains), tuple(str(f) for f in files))

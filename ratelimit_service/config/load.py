"""Load config files: YAML documents (one domain each) from a file or a folder of files."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ratelimit_service.config.model import DomainConfig, RateLimitConfig
from ratelimit_service.config.parse import ConfigError, DocumentParser


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.MarkedYAMLError(problem=f"duplicate field {key!r} (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_text(text: str, source: str) -> list[DomainConfig]:
    """Every YAML document in `text` is one domain."""
    try:
        documents = [d for d in yaml.load_all(text, Loader=_UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, where, f"invalid YAML: {problem}") from None
    if not documents:
        raise ConfigError(source, "", "empty config (expected a document with a domain)")
    domains = []
    for i, document in enumerate(documents):
        label = source if len(documents) == 1 else f"{source} (document {i + 1})"
        domains.append(DocumentParser(label).domain(document))
    return domains


def config_files(path: Path) -> list[Path]:
    """A file, or every *.yaml / *.yml in a folder (like envoyproxy/ratelimit's config dir)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def load_config(path: Path) -> RateLimitConfig:
    files = config_files(path)
    if not files:
        raise ConfigError(str(path), "", "no *.yaml files in this folder")
    domains: dict[str, DomainConfig] = {}
    for file in files:
        try:
            text = file.read_text()
        except OSError as exc:
            raise ConfigError(str(file), "", f"cannot read: {exc.strerror or exc}") from None
        for domain in parse_text(text, str(file)):
            if domain.domain in domains:
                first = domains[domain.domain].source
                raise ConfigError(
                    domain.source, "domain", f"duplicate domain {domain.domain!r} (also in {first})"
                )
            domains[domain.domain] = domain
    return RateLimitConfig(MappingProxyType(domains), tuple(str(f) for f in files))

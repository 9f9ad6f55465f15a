"""The Lyft-format config: parsing, most-specific lookup, and every promised error message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ratelimit_service.config import DEFAULT_CONFIG, ConfigError, load_config, parse_text
from ratelimit_service.config.model import with_unit_limits
from ratelimit_service.windows import Window

LYFT_EXAMPLE = """
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit: {unit: second, requests_per_unit: 500}
  - key: database
    value: default
    rate_limit: {unit: second, requests_per_unit: 500}
    shadow_mode: true
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
    descriptors:
      - key: path
        value: /foo*
        rate_limit: {unit: minute, requests_per_unit: 5}
      - key: path
        value: /foo/bar
        rate_limit: {unit: minute, requests_per_unit: 50, algorithm: sliding_log}
      - key: path
        rate_limit: {unit: hour, requests_per_unit: 7, algorithm: fixed_window}
  - key: source_cluster
    value: proxy
    descriptors:
      - key: destination_cluster
        value: bank
        rate_limit: {unlimited: true}
      - key: destination_cluster
        rate_limits:
          - {unit: minute, requests_per_unit: 60, name: per_minute}
          - {unit: hour, requests_per_unit: 1000}
        replaces: [{name: shared}]
  - key: shared
    rate_limit: {unit: day, requests_per_unit: 3, name: shared}
    detailed_metric: true
"""


def domain(text: str = LYFT_EXAMPLE):
    return parse_text(textwrap.dedent(text), "limits.yaml")[0]


def limits_of(entries: list[tuple[str, str]], text: str = LYFT_EXAMPLE) -> tuple[Window, ...] | None:
    rule = domain(text).rule_for(entries)
    return None if rule is None else rule.windows


def test_exact_value_then_wildcard_then_any_value() -> None:
    addr = ("remote_address", "10.0.0.1")
    assert limits_of([addr]) == (Window("second", 10),)
    assert limits_of([addr, ("path", "/foo/bar")]) == (Window("minute", 50, "sliding_log"),)
    assert limits_of([addr, ("path", "/foo/baz")]) == (Window("minute", 5),)
    assert limits_of([addr, ("path", "/other")]) == (Window("hour", 7, "fixed_window"),)


def test_no_match_and_no_backtracking() -> None:
    assert limits_of([("database", "other")]) is None
    assert limits_of([("database", "users"), ("extra", "x")]) is None  # longer than the tree
    assert limits_of([("source_cluster", "proxy")]) is None  # a node without a limit
    assert limits_of([]) is None


def test_extensions_and_lyft_fields_are_read() -> None:
    config = domain()
    shadow = config.rule_for([("database", "default")])
    assert shadow is not None and shadow.shadow_mode
    unlimited = config.rule_for([("source_cluster", "proxy"), ("destination_cluster", "bank")])
    assert unlimited is not None and unlimited.unlimited and unlimited.windows == ()
    multi = config.rule_for([("source_cluster", "proxy"), ("destination_cluster", "mars")])
    assert multi is not None
    assert multi.windows == (Window("minute", 60), Window("hour", 1000))
    assert multi.replaces == ("shared",) and multi.name == "per_minute"
    assert multi.metric_key == "source_cluster_proxy.destination_cluster"
    shared = config.rule_for([("shared", "x")])
    assert shared is not None and shared.detailed_metric


def test_domain_options_and_defaults() -> None:
    text = """
    domain: d
    failure_mode: deny
    algorithm: sliding_log
    retry_after: {backoff: progressive, jitter: 0.3}
    descriptors:
      - key: k
        rate_limit: {unit: minute, requests_per_unit: 2}
    """
    config = domain(text)
    assert config.failure_mode == "deny"
    assert config.retry_after.backoff == "progressive" and config.retry_after.jitter == 0.3
    assert limits_of([("k", "v")], text) == (Window("minute", 2, "sliding_log"),)
    assert domain("domain: d\n").failure_mode == "allow"


def test_builtin_default_is_the_seed_60_per_minute_and_1000_per_hour() -> None:
    config = load_config(DEFAULT_CONFIG).domain("gateway")
    assert config is not None
    rule = config.rule_for([("route", "v1"), ("plan", "free"), ("api_key", "key_1")])
    assert rule is not None and rule.windows == (Window("minute", 60), Window("hour", 1000))
    assert config.failure_mode == "allow"
    flagged = with_unit_limits(load_config(DEFAULT_CONFIG), {"minute": 3}).domain("gateway")
    assert flagged is not None
    rule = flagged.rule_for([("route", "v1"), ("plan", "pro"), ("api_key", "key_1")])
    assert rule is not None and rule.windows == (Window("minute", 3), Window("hour", 1000))


def test_a_folder_holds_one_domain_per_file_and_rejects_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("domain: one\n")
    (tmp_path / "b.yml").write_text("domain: two\n")
    (tmp_path / "notes.txt").write_text("ignored")
    assert set(load_config(tmp_path).domains) == {"one", "two"}
    (tmp_path / "c.yaml").write_text("domain: one\n")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert (
        str(error.value)
        == f"{tmp_path / 'c.yaml'}: domain: duplicate domain 'one' (also in {tmp_path / 'a.yaml'})"
    )


BAD_CONFIGS = [
    pytest.param(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: minutes, requests_per_unit: 1}\n",
        "descriptors[0].rate_limit.unit: must be one of second, minute, hour, day (got 'minutes')",
        id="bad unit",
    ),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: k\n    value: v\n  - key: k\n    value: v\n",
        "descriptors[1].key: duplicate descriptor key 'k' with value 'v' (first at descriptors[0])",
        id="duplicate key",
    ),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: ''\n",
        "descriptors[0].key: must be a non-empty string",
        id="empty key",
    ),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limitt: {}\n",
        "descriptors[0].rate_limitt: unknown field (expected one of key, value, rate_limit, rate_limits,",
        id="unknown field",
    ),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 0}\n",
        "descriptors[0].rate_limit.requests_per_unit: must be a positive integer, got 0",
        id="non-positive limit",
    ),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unlimited: true, unit: second}\n",
        "descriptors[0].rate_limit: unlimited: true cannot be combined with unit",
        id="unlimited with a unit",
    ),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: k\n"
        "    rate_limit: {unit: second, requests_per_unit: 1, name: me}\n    replaces: [{name: me}]\n",
        "descriptors[0].replaces[0].name: 'me' is this descriptor's own rate limit",
        id="replaces itself",
    ),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
        "    replaces: [{name: ghost}]\n",
        "descriptors[0].replaces[0].name: 'ghost' matches no named rate limit in this domain",
        id="replaces nothing",
    ),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limits:\n"
        "      - {unit: minute, requests_per_unit: 1}\n      - {unit: minute, requests_per_unit: 2}\n",
        "descriptors[0].rate_limits[1].unit: a second minute window on one descriptor",
        id="two windows of one unit",
    ),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: k\n"
        "    rate_limit: {unit: second, requests_per_unit: 1, algorithm: gcra}\n",
        "descriptors[0].rate_limit.algorithm: must be one of sliding_window, sliding_log, fixed_window",
        id="unknown algorithm",
    ),
    pytest.param(
        "domain: d\nretry_after: {backoff: progressive, jitter: 2}\n",
        "retry_after.jitter: must be a number in [0, 1), got 2",
        id="bad jitter",
    ),
    pytest.param(
        "domain: d\nfailure_mode: maybe\n", "failure_mode: must be one of allow, deny", id="failure mode"
    ),
    pytest.param("descriptors: []\n", "domain: missing", id="no domain"),
    pytest.param("domain: d\ndomain: e\n", "invalid YAML: duplicate field 'domain' (line 2)", id="yaml dup"),
    pytest.param("domain: [d\n", "invalid YAML", id="yaml syntax"),
    pytest.param(
        "domain: d\ndescriptors:\n  - key: rate_limit_minute\n",
        "descriptors[0].key: 'rate_limit_minute' is reserved for per-key limit overrides",
        id="reserved key",
    ),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS)
def test_each_bad_config_names_file_path_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)

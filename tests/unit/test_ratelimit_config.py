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
          - {unit: minute, requests_per_unit: 60, name: per_minute, replaces: [{name: shared}]}
          - {unit: hour, requests_per_unit: 1000}
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
    assert multi.metric_key == "mongo_cps.source_cluster_proxy.destination_cluster"
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
    assert str(error.value) == (
        f"{tmp_path / 'c.yaml'}: domain: duplicate domain 'one' in config file "
        f"(also in {tmp_path / 'a.yaml'})"
    )


D = "domain: d\ndescriptors:\n"
BAD_CONFIGS = [
    # What envoyproxy/ratelimit's loader refuses (src/config/config_impl.go), each with its reason.
    pytest.param(
        f"{D}  - key: k\n    rate_limit: {{unit: minutes, requests_per_unit: 1}}\n",
        "descriptors[0].rate_limit.unit: invalid rate limit unit 'minutes'",
        id="bad unit",
    ),
    pytest.param(
        f"{D}  - key: k\n    rate_limit: {{requests_per_unit: 1}}\n",
        "descriptors[0].rate_limit.unit: invalid rate limit unit None",
        id="no unit",
    ),
    pytest.param(
        f"{D}  - key: k\n    value: v\n  - key: k\n    value: v\n",
        "descriptors[1]: duplicate descriptor composite key 'd.k_v'",
        id="duplicate key",
    ),
    pytest.param(
        f"{D}  - key: a_b\n  - key: a\n    value: b\n",
        "descriptors[1]: duplicate descriptor composite key 'd.a_b'",
        id="duplicate composite key",
    ),
    pytest.param(f"{D}  - key: ''\n", "descriptors[0].key: descriptor has empty key", id="empty key"),
    pytest.param(f"{D}  - value: v\n", "descriptors[0].key: descriptor has empty key", id="no key"),
    pytest.param(
        f"{D}  - key: k\n    rate_limitt: {{}}\n", "descriptors[0].rate_limitt: unknown key", id="unknown key"
    ),
    pytest.param(
        f"{D}  - key: k\n    7: x\n", "descriptors[0]: key is not of type string: 7", id="non-string key"
    ),
    pytest.param(
        f"{D}  - key: k\n  - just text\n",
        "descriptors[1]: list of type other than map",
        id="list of non-maps",
    ),
    pytest.param(
        f"{D}  - key: k\n    rate_limit: {{unlimited: true, unit: second}}\n",
        "descriptors[0].rate_limit.unit: should not specify rate limit unit when unlimited",
        id="unlimited with a unit",
    ),
    pytest.param(
        f"{D}  - key: k\n    rate_limit:\n      {{unit: second, requests_per_unit: 1, name: me,\n"
        "       replaces: [{name: me}]}\n",
        "descriptors[0].rate_limit.replaces[0].name: replaces should not contain name of same descriptor",
        id="replaces itself",
    ),
    pytest.param(
        f"{D}  - key: k\n    rate_limit: {{unit: second, requests_per_unit: 1, replaces: [{{name: ''}}]}}\n",
        "descriptors[0].rate_limit.replaces[0].name: should not have an empty replaces entry",
        id="empty replaces",
    ),
    pytest.param(
        f"{D}  - key: k\n    value: v\n    share_threshold: true\n",
        "share_threshold can only be used with wildcard values (containing '*'), but found key 'k_v'",
        id="share_threshold without a wildcard",
    ),
    pytest.param(
        f"{D}  - key: k\n    rate_limit: {{unit: second, requests_per_unit: -1}}\n",
        "descriptors[0].rate_limit.requests_per_unit: must be a whole number from 0 to 4294967295",
        id="negative limit",
    ),
    pytest.param(
        f"{D}  - key: k\n    shadow_mode: 'yes'\n", "shadow_mode: must be true or false", id="quoted bool"
    ),
    pytest.param(
        f"{D}  - key: {{key: b}}\n", "descriptors[0].key: must be a string, got a mapping", id="map as key"
    ),
    pytest.param(
        "domain: d\ndescriptors: {key: k}\n", "descriptors: must be a list, got dict", id="map as list"
    ),
    pytest.param("descriptors: []\n", "domain: config file cannot have empty domain", id="no domain"),
    pytest.param("domain: ''\n", "domain: config file cannot have empty domain", id="empty domain"),
    pytest.param("domain: [d\n", "invalid YAML", id="yaml syntax"),
    # Our extensions: only where they mean something, and checked.
    pytest.param(
        f"{D}  - key: k\n    rate_limits:\n      - {{unit: minute, requests_per_unit: 1}}\n"
        "      - {unit: minute, requests_per_unit: 2}\n",
        "descriptors[0].rate_limits[1].unit: a second minute window on one descriptor",
        id="two windows of one unit",
    ),
    pytest.param(
        f"{D}  - key: k\n    rate_limit: {{unit: second, requests_per_unit: 1, algorithm: gcra}}\n",
        "descriptors[0].rate_limit.algorithm: must be one of sliding_window, sliding_log, fixed_window",
        id="unknown algorithm",
    ),
    pytest.param(
        f"{D}  - key: k\n    failure_mode: deny\n",
        "descriptors[0].failure_mode: not allowed here",
        id="extension out of place",
    ),
    pytest.param(
        f"{D}  - key: k\n    rate_limits:\n      - {{unit: minute, requests_per_unit: 1, burst: 2}}\n",
        "descriptors[0].rate_limits[0].burst: unknown key",
        id="unknown key in an extension",
    ),
    pytest.param(
        "domain: d\nretry_after: {backoff: progressive, jitter: 2}\n",
        "retry_after.jitter: must be a number in [0, 1), got 2",
        id="bad jitter",
    ),
    pytest.param(
        "domain: d\nfailure_mode: maybe\n", "failure_mode: must be one of allow, deny", id="failure mode"
    ),
    pytest.param(
        f"{D}  - key: rate_limit_minute\n",
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


def test_string_fields_keep_the_scalar_as_written_and_flags_default_false() -> None:
    config = domain(
        "domain: 7\ndescriptors:\n  - key: version\n    value: 1.10\n    rate_limit: {unit: MINUTE}\n"
    )
    assert config.domain == "7"
    rule = config.rule_for([("version", "1.10")])
    # No requests_per_unit is 0 (Lyft's zero value): every request is over the limit.
    assert rule is not None and rule.windows == (Window("minute", 0),) and not rule.shadow_mode


def test_lyft_keys_out_of_place_and_repeated_keys_load_with_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = """
    domain: d
    descriptors:
      - key: k
        unit: minute            # belongs in rate_limit: Lyft ignores it here
        replaces: [{name: x}]   # ditto
        rate_limit: {unit: second, requests_per_unit: 1}
        rate_limit: {unit: hour, requests_per_unit: 2}
      - key: empty
        descriptors:
    """
    config = domain(text)
    assert limits_of([("k", "v")], text) == (Window("hour", 2),)  # the last of the repeated keys
    assert config.rule_for([("empty", "v")]) is None
    warnings = " | ".join(caplog.messages)
    assert "descriptors[0].unit: means nothing here" in warnings
    assert "descriptors[0].replaces: means nothing here (it belongs inside rate_limit)" in warnings
    assert "'rate_limit' given twice, the last one counts" in warnings


def test_merge_domain_config_joins_files_of_one_domain(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "domain: d\ndescriptors:\n  - key: b\n    rate_limit: {unit: hour, requests_per_unit: 2}\n"
    )
    with pytest.raises(ConfigError, match="duplicate domain 'd' in config file"):
        load_config(tmp_path)
    merged = load_config(tmp_path, merge_domains=True).domain("d")
    assert merged is not None and merged.sources == (str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    assert merged.rule_for([("a", "x")]) is not None and merged.rule_for([("b", "x")]) is not None
    (tmp_path / "c.yaml").write_text("domain: d\ndescriptors:\n  - key: a\n")
    with pytest.raises(ConfigError, match=r"duplicate descriptor composite key 'd\.a'"):
        load_config(tmp_path, merge_domains=True)


def test_runtime_layout_and_subfolders(tmp_path: Path) -> None:
    from ratelimit_service.runtime import near_limit_ratio, runtime_config_dir

    assert runtime_config_dir({}) is None
    env = {"RUNTIME_ROOT": str(tmp_path), "RUNTIME_SUBDIRECTORY": "ratelimit"}
    folder = runtime_config_dir(env)
    assert folder == tmp_path / "ratelimit" / "config"
    assert runtime_config_dir({"RUNTIME_SUBDIRECTORY": "rl"}) == Path("/srv/runtime_data/current/rl/config")
    (folder / "team").mkdir(parents=True)
    (folder / "team" / "one.yaml").write_text("domain: one\n")
    (folder / "two.yml").write_text("domain: two\n")
    (folder / ".swap.yaml").write_text("domain: [broken\n")  # dotfiles are skipped
    assert set(load_config(folder).domains) == {"one", "two"}
    assert near_limit_ratio({}) == 0.8 and near_limit_ratio({"NEAR_LIMIT_RATIO": "0.5"}) == 0.5
    with pytest.raises(ValueError, match="NEAR_LIMIT_RATIO"):
        near_limit_ratio({"NEAR_LIMIT_RATIO": "2"})

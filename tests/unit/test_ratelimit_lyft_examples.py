"""envoyproxy/ratelimit's README examples (1–11), as that README says they behave, on our limiter.

Each config is the README's own (no extension fields); decisions go through the real limiter and
the in-memory store (the same admission rules as the Redis script) on a fake clock, with
`fixed_window` as the domain default where the count matters, since that is Lyft's algorithm.
"""

from __future__ import annotations

import random
import textwrap

import pytest
from prometheus_client import REGISTRY

from ratelimit_service.config import parse_text
from ratelimit_service.config.model import DomainConfig, RateLimitConfig
from ratelimit_service.limiter import OK, OVER_LIMIT, Limiter, RequestDescriptor
from ratelimit_service.local_cache import OverLimitCache
from ratelimit_service.store.memory import MemoryStore
from ratelimit_service.windows import Window

START_MS = 1_700_000_040_000  # 40 s into a minute: far from any window edge used below


def domain(text: str) -> DomainConfig:
    return parse_text(textwrap.dedent(text), "example.yaml")[0]


def limiter(text: str) -> Limiter:
    config = domain(text)
    clock = [START_MS]
    return Limiter(
        RateLimitConfig({config.domain: config}),
        MemoryStore(lambda: clock[0]),
        OverLimitCache(lambda: clock[0] / 1000),
        random.Random(1),
    )


def descriptor(*entries: tuple[str, str]) -> RequestDescriptor:
    return RequestDescriptor(tuple(entries))


async def codes(limits: Limiter, domain_name: str, descriptors: list[RequestDescriptor], n: int) -> list[str]:
    return [(await limits.decide(domain_name, descriptors)).code for _ in range(n)]


def windows(config: DomainConfig, *entries: tuple[str, str]) -> tuple[Window, ...] | None:
    rule = config.rule_for(entries)
    return None if rule is None else rule.windows


EXAMPLE_1 = """
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500
  - key: database
    value: default
    rate_limit:
      unit: second
      requests_per_unit: 500
"""


def test_example_1_two_values_of_one_key() -> None:
    config = domain(EXAMPLE_1)
    assert windows(config, ("database", "users")) == (Window("second", 500),)
    assert windows(config, ("database", "default")) == (Window("second", 500),)
    assert windows(config, ("database", "other")) is None
    assert config.match([("database", "users")]).stat_key == "mongo_cps.database_users"  # type: ignore[union-attr]


EXAMPLE_2 = """
domain: messaging
algorithm: fixed_window
descriptors:
  # Only allow 5 marketing messages a day
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 5
  # Only allow 100 messages a day to any unique phone number
  - key: to_number
    rate_limit:
      unit: day
      requests_per_unit: 100
"""


async def test_example_2_nested_and_aggregate_descriptors() -> None:
    limits = limiter(EXAMPLE_2)
    marketing = descriptor(("message_type", "marketing"), ("to_number", "2061111111"))
    number = descriptor(("to_number", "2061111111"))
    # Both descriptors in one call: the result is the OR of both; 5 marketing messages a day.
    assert await codes(limits, "messaging", [marketing, number], 6) == [OK] * 5 + [OVER_LIMIT]
    # Each number has its own counters; the plain limit still has room for this number.
    other = descriptor(("message_type", "marketing"), ("to_number", "2062222222"))
    assert await codes(limits, "messaging", [other], 5) == [OK] * 5
    assert await codes(limits, "messaging", [number], 95) == [OK] * 95  # 5 + 95 = 100
    assert await codes(limits, "messaging", [number], 1) == [OVER_LIMIT]
    config = domain(EXAMPLE_2)
    assert config.match([("message_type", "marketing"), ("to_number", "1")]).stat_key == (  # type: ignore[union-attr]
        "messaging.message_type_marketing.to_number"
    )


EXAMPLE_3 = """
domain: edge_proxy_per_ip
descriptors:
  - key: remote_address
    rate_limit:
      unit: second
      requests_per_unit: 10
  # Black list IP
  - key: remote_address
    value: 50.0.0.5
    rate_limit:
      unit: second
      requests_per_unit: 0
"""


async def test_example_3_most_specific_match_and_a_zero_limit() -> None:
    limits = limiter(EXAMPLE_3)
    assert await codes(limits, "edge_proxy_per_ip", [descriptor(("remote_address", "50.0.0.5"))], 2) == [
        OVER_LIMIT,
        OVER_LIMIT,
    ]
    assert (
        await codes(limits, "edge_proxy_per_ip", [descriptor(("remote_address", "50.0.0.1"))], 10)
        == [OK] * 10
    )


EXAMPLE_4_FLAT = """
domain: example4
descriptors:
  - key: key
    value: value
    rate_limit:
      requests_per_unit: 300
      unit: second
"""
EXAMPLE_4_NESTED = """
domain: example4
descriptors:
  - key: key
    value: value
    descriptors:
      - key: subkey
        rate_limit:
          requests_per_unit: 300
          unit: second
"""


def test_example_4_the_request_depth_must_equal_the_config_depth() -> None:
    two = (("key", "value"), ("subkey", "subvalue"))
    assert windows(domain(EXAMPLE_4_FLAT), *two) is None
    assert windows(domain(EXAMPLE_4_NESTED), *two) == (Window("second", 300),)
    assert windows(domain(EXAMPLE_4_NESTED), ("key", "value")) is None


EXAMPLE_5 = """
domain: internal
descriptors:
  - key: ldap
    rate_limit:
      unlimited: true
  - key: azure
    rate_limit:
      unit: minute
      requests_per_unit: 100
"""


async def test_example_5_unlimited_is_never_limited() -> None:
    limits = limiter(EXAMPLE_5)
    rule = domain(EXAMPLE_5).rule_for([("ldap", "x")])
    assert rule is not None and rule.unlimited and rule.windows == ()
    assert await codes(limits, "internal", [descriptor(("ldap", "x"))], 300) == [OK] * 300
    assert windows(domain(EXAMPLE_5), ("azure", "x")) == (Window("minute", 100),)


EXAMPLE_6 = """
domain: example6
algorithm: fixed_window
descriptors:
  - key: service
    descriptors:
      - key: user
        value: user-a
        rate_limit:
          requests_per_unit: 10
          unit: second
        shadow_mode: true
      - key: user
        value: user-b
        rate_limit:
          requests_per_unit: 20
          unit: second
"""


async def test_example_6_shadow_mode_reports_but_never_limits() -> None:
    limits = limiter(EXAMPLE_6)
    user_a = descriptor(("service", "auth-service"), ("user", "user-a"))
    user_b = descriptor(("service", "auth-service"), ("user", "user-b"))
    before = REGISTRY.get_sample_value(
        "ratelimit_service_rate_limit_shadow_mode_total", {"domain": "example6", "key": "service.user_user-a"}
    )
    assert await codes(limits, "example6", [user_a], 15) == [OK] * 15
    after = REGISTRY.get_sample_value(
        "ratelimit_service_rate_limit_shadow_mode_total", {"domain": "example6", "key": "service.user_user-a"}
    )
    assert (after or 0) - (before or 0) == 5  # the 5 requests past 10/s
    assert await codes(limits, "example6", [user_b], 21) == [OK] * 20 + [OVER_LIMIT]


EXAMPLE_7 = """
domain: example7
descriptors:
  - key: key_1
    value: value_1
    descriptors:
      - key: user
        value: bkthomps
        rate_limit:
          name: specific_limit
          requests_per_unit: 5
          unit: second
  - key: key_2
    value: value_2
    descriptors:
      - key: user
        value: bkthomps
        rate_limit:
          replaces:
            - name: specific_limit
          requests_per_unit: 10
          unit: second
"""


async def test_example_7_replaces_drops_the_named_limit_when_both_match() -> None:
    first = descriptor(("key_1", "value_1"), ("user", "bkthomps"))
    second = descriptor(("key_2", "value_2"), ("user", "bkthomps"))
    assert await codes(limiter(EXAMPLE_7), "example7", [first], 6) == [OK] * 5 + [OVER_LIMIT]
    assert await codes(limiter(EXAMPLE_7), "example7", [second], 11) == [OK] * 10 + [OVER_LIMIT]
    both = limiter(EXAMPLE_7)
    assert await codes(both, "example7", [first, second], 11) == [OK] * 10 + [OVER_LIMIT]
    # ... and the replaced 5/s limit was not charged by those 10: it still has its 5.
    assert await codes(both, "example7", [first], 6) == [OK] * 5 + [OVER_LIMIT]


EXAMPLE_8 = """
domain: example8
descriptors:
  - key: key1
    detailed_metric: true
    rate_limit:
      unit: minute
      requests_per_unit: 10
  - key: key1
    value: value1
    rate_limit:
      unit: minute
      requests_per_unit: 20
"""


def test_example_8_detailed_metric_keys_unlisted_values_by_value() -> None:
    config = domain(EXAMPLE_8)
    keys = [
        config.match([("key1", v)]).stat_key for v in ("unspecified_value", "unspecified_value2", "value1")
    ]  # type: ignore[union-attr]
    assert keys == [
        "example8.key1_unspecified_value",
        "example8.key1_unspecified_value2",
        "example8.key1_value1",
    ]
    assert windows(config, ("key1", "anything")) == (Window("minute", 10),)
    assert windows(config, ("key1", "value1")) == (Window("minute", 20),)


EXAMPLE_9 = """
domain: example9
descriptors:
  - key: key1
    value: value*
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: path
    value: /api/*/action
    rate_limit: {unit: minute, requests_per_unit: 21}
  - key: route
    value: /api/*/resource/*/action
    rate_limit: {unit: minute, requests_per_unit: 22}
"""


@pytest.mark.parametrize(
    "entry,limit",
    [
        (("key1", "value1"), 20),
        (("key1", "valueXYZ"), 20),
        (("key1", "value"), 20),
        (("key1", "valu"), None),
        (("path", "/api/123/action"), 21),
        (("path", "/api/user-id/action"), 21),
        (("path", "/api/123/other"), None),
        (("route", "/api/v1/resource/123/action"), 22),
        (("route", "/api/v2/resource/456/action"), 22),
        (("route", "/api/v1/resource/123"), None),
        (("route", "/api/v1/other/123/action"), None),
    ],
)
def test_example_9_wildcards_anywhere_in_a_value(entry: tuple[str, str], limit: int | None) -> None:
    found = windows(domain(EXAMPLE_9), entry)
    assert (found[0].limit if found else None) == limit


EXAMPLE_10 = """
domain: example10
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: http_method
        value_to_metric: true
        descriptors:
          - key: subject_id
            rate_limit: {unit: minute, requests_per_unit: 60}
---
domain: example10_wildcard
descriptors:
  - key: user
    value_to_metric: true
    descriptors:
      - key: action
        value: read*
        value_to_metric: true
        descriptors:
          - key: resource
            rate_limit: {unit: minute, requests_per_unit: 100}
"""


def test_example_10_value_to_metric_puts_request_values_in_the_stats_key() -> None:
    plain, wildcard = parse_text(EXAMPLE_10, "example.yaml")
    api = plain.match([("route", "api"), ("http_method", "GET"), ("subject_id", "123")])
    web = plain.match([("route", "web"), ("http_method", "POST"), ("subject_id", "456")])
    assert api is not None and api.stat_key == "example10.route_api.http_method_GET.subject_id"
    assert web is not None and web.stat_key == "example10.route_web.http_method_POST.subject_id"
    read = wildcard.match([("user", "alice"), ("action", "readfile"), ("resource", "documents")])
    assert read is not None and read.stat_key == "example10_wildcard.user_alice.action_readfile.resource"


EXAMPLE_11 = """
domain: example11
algorithm: fixed_window
descriptors:
  - key: files
    value: files/*
    share_threshold: true
    rate_limit:
      unit: hour
      requests_per_unit: 10
  - key: files_no_share
    value: files_no_share/*
    share_threshold: false
    rate_limit:
      unit: hour
      requests_per_unit: 10
"""


async def test_example_11_share_threshold_makes_wildcard_matches_share_one_counter() -> None:
    limits = limiter(EXAMPLE_11)
    for name in ("a.pdf", "b.csv"):
        assert await codes(limits, "example11", [descriptor(("files", f"files/{name}"))], 5) == [OK] * 5
    assert await codes(limits, "example11", [descriptor(("files", "files/c.txt"))], 1) == [OVER_LIMIT]
    a = descriptor(("files_no_share", "files_no_share/a.pdf"))
    assert await codes(limits, "example11", [a], 11) == [OK] * 10 + [OVER_LIMIT]
    b = descriptor(("files_no_share", "files_no_share/b.csv"))
    assert await codes(limits, "example11", [b], 10) == [OK] * 10

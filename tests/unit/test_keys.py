from __future__ import annotations

import hashlib

import pytest

from authz_service import keys
from authz_service.keys import KeyProblem


@pytest.mark.parametrize("prefix", keys.PREFIXES)
def test_generated_keys_are_well_formed_and_unique(prefix: str) -> None:
    generated = {keys.generate_key(prefix) for _ in range(50)}
    assert len(generated) == 50
    for key in generated:
        assert key.startswith(prefix + "_")
        assert len(key) - len(prefix) - 1 >= keys.MIN_SECRET_CHARS
        assert keys.is_well_formed(key)
        assert keys.environment_of(key) == keys.ENVIRONMENTS[prefix]


def test_unknown_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown key prefix"):
        keys.generate_key("sk_prod")


@pytest.mark.parametrize(
    "candidate",
    ["sk_live_short", "sk_prod_" + "a" * 40, "sk_live_" + "a" * 31, "sk_live_" + "a" * 40 + "!",
     "sk_live_" + "a" * 200, "SK_LIVE_" + "a" * 40, "sk_live_" + "а" * 40],  # last: Cyrillic look-alike
)  # fmt: skip
def test_malformed_keys(candidate: str) -> None:
    assert not keys.is_well_formed(candidate)


def test_hash_is_sha256_hex_of_the_whole_key() -> None:
    key = keys.generate_key("sk_test")
    assert keys.hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert keys.display_prefix(key) == key[:12]


def test_extract_from_bearer_and_x_api_key() -> None:
    key = keys.generate_key("sk_live")
    assert keys.extract_key({"authorization": f"Bearer {key}"}).key == key
    assert keys.extract_key({"authorization": f"bearer  {key} "}).key == key
    assert keys.extract_key({"x-api-key": key}).key == key


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, KeyProblem.MISSING),
        ({"authorization": "Bearer "}, KeyProblem.MISSING),
        ({"x-api-key": "  "}, KeyProblem.MISSING),
        ({"authorization": "Basic dXNlcjpwYXNz"}, KeyProblem.MALFORMED),
        ({"authorization": "Bearer sk_live_tooshort"}, KeyProblem.MALFORMED),
        ({"x-api-key": "not-a-key"}, KeyProblem.MALFORMED),
    ],
)
def test_extract_problems(headers: dict[str, str], problem: KeyProblem) -> None:
    credential = keys.extract_key(headers)
    assert credential.key is None
    assert credential.problem is problem

"""`python -m authz_service.keys` against real Postgres: keys are shown once, listings never show them."""

from __future__ import annotations

import json

from authz_service import keys
from tests.authz_fixtures import fetchval, keys_cli


def test_generate_prints_the_key_once_and_stores_only_its_hash(database_url: str) -> None:
    args = ["--prefix", "sk_test", "--name", "cli app", "--plan", "pro", "--rate-limit-minute", "70"]
    result = keys_cli(database_url, "generate", *args, "--expires-in", "30d", "--scopes", "embed,usage")
    assert result.returncode == 0, result.stderr
    key = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith("sk_test_"))
    assert keys.is_well_formed(key)
    assert "pro (70/minute, 10000/hour)" in result.stdout and "embed, usage" in result.stdout
    stored = fetchval(database_url, "SELECT count(*) FROM api_keys WHERE key_hash = $1", keys.hash_key(key))
    assert stored == 1
    plaintext = fetchval(
        database_url, "SELECT count(*) FROM api_keys WHERE position($1 in api_keys::text) > 0", key
    )
    assert plaintext == 0  # the plaintext is nowhere in the row
    listing = keys_cli(database_url, "list")
    assert listing.returncode == 0 and key[:12] in listing.stdout
    assert key not in listing.stdout and keys.hash_key(key) not in listing.stdout


def test_revoke_and_rotate_by_id(database_url: str) -> None:
    made = json.loads(keys_cli(database_url, "generate", "--name", "to-rotate", "--json").stdout)
    rotated = keys_cli(database_url, "rotate", made["id"], "--grace", "24h", "--json")
    assert rotated.returncode == 0, rotated.stderr
    body = json.loads(rotated.stdout)
    assert body["replaces"]["id"] == made["id"] and body["replaces"]["status"] == "rotating"
    assert body["api_key"].startswith("sk_live_") and body["name"] == "to-rotate"
    again = keys_cli(database_url, "rotate", made["id"])
    assert again.returncode == 2 and "already rotated" in again.stderr
    revoked = keys_cli(database_url, "revoke", body["id"])
    assert revoked.returncode == 0 and f"Revoked {body['id']}" in revoked.stdout
    active = json.loads(keys_cli(database_url, "list", "--active", "--json").stdout)
    assert body["id"] not in {k["id"] for k in active}
    missing = keys_cli(database_url, "revoke", "key_0000000000000000")
    assert missing.returncode == 2 and missing.stderr.strip().endswith("no key with id key_0000000000000000")


def test_unknown_plan_is_a_one_line_error(database_url: str) -> None:
    result = keys_cli(database_url, "generate", "--plan", "platinum")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "python -m authz_service.keys: error: unknown plan 'platinum'; choose from free, pro"
    ]

"""API keys for the benchmark, created in the real Postgres store.

The first key goes through the store's own `add_key` (and its migrations); the thousands
more that the key-scaling scenarios need are COPYed in one statement, with each row built by
the same pure helpers the store uses (hash, display prefix, environment).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from authz_service import keys, signing
from authz_service.sealing import SecretBox
from authz_service.store import PostgresKeyStore, new_key_id, new_signing_secret

PREFIX = "sk_test"
OWNER = "bench"


def _row(key: str) -> tuple[str, str, str, str, str, str, str]:
    return (
        new_key_id(),
        keys.hash_key(key),
        keys.display_prefix(key),
        "bench",
        OWNER,
        keys.environment_of(key),
        "free",
    )


def generate(count: int) -> list[str]:
    return [keys.generate_key(PREFIX) for _ in range(count)]


async def _store(database_url: str, created: list[str]) -> None:
    store = await PostgresKeyStore.connect(database_url, retry_seconds=30)
    try:
        await store.add_key(created[0], name="bench", owner=OWNER)
    finally:
        await store.close()
    if len(created) > 1:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.copy_records_to_table(
                "api_keys",
                records=[_row(key) for key in created[1:]],
                columns=["id", "key_hash", "display_prefix", "name", "owner", "environment", "plan"],
            )
        finally:
            await conn.close()


def store_keys(database_url: str, created: list[str]) -> None:
    """Make `created` (from generate()) usable keys in the store at `database_url`."""
    asyncio.run(_store(database_url, created))


TOKEN_BUDGET = 1_000_000_000  # token limits nothing in a benchmark reaches: checked and charged, never hit


async def _special(database_url: str, master_key: str) -> tuple[str, str, str, str]:
    store = await PostgresKeyStore.connect(database_url, retry_seconds=30)
    try:
        signer, allowlisted, metered = generate(3)
        await store.create_key(metered, "bench-metered", OWNER, token_limit_per_minute=TOKEN_BUDGET,
                               token_limit_per_day=TOKEN_BUDGET)  # fmt: skip
        key_id = new_key_id()
        secret, sealed = new_signing_secret(SecretBox(master_key), key_id)
        await store.create_key(signer, "bench-signed", OWNER, key_id=key_id, signing_secret_enc=sealed)
        networks = ["10.0.0.0/8", "127.0.0.1"]  # the match is on the second network
        await store.create_key(allowlisted, "bench-allowlisted", OWNER, allowed_ips=networks)
        return signer, secret, allowlisted, metered
    finally:
        await store.close()


def store_special_keys(database_url: str, master_key: str) -> tuple[str, str, str, str]:
    """A key that signs its requests, one bound to 127.0.0.1 and one with token limits:
    (signing key, its secret, allowlisted key, metered key)."""
    return asyncio.run(_special(database_url, master_key))


_signed_serial = 0  # never the same path twice in a run: a repeated signature would be a replay


def signed_requests(secret: str, path: str, body: bytes, count: int) -> tuple[tuple[str, str, str], ...]:
    """`count` distinct signed POSTs of `body` to `path?n=…`: (path, timestamp, X-Signature) each."""
    global _signed_serial
    stamp = str(int(time.time()))
    entries = []
    for _ in range(count):
        _signed_serial += 1
        signed_path = f"{path}?n={_signed_serial}"
        entries.append((signed_path, stamp, signing.signature(secret, stamp, "POST", signed_path, body)))
    return tuple(entries)

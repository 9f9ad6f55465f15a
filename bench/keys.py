"""API keys for the benchmark, created in the real Postgres store.

The first key goes through the store's own `add_key` (and its migrations); the thousands
more that the key-scaling scenarios need are COPYed in one statement, with each row built by
the same pure helpers the store uses (hash, display prefix, environment).
"""

from __future__ import annotations

import asyncio

import asyncpg

from authz_service import keys
from authz_service.store import PostgresKeyStore, new_key_id

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

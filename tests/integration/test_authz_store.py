"""The key store on real Postgres: migrations, NOTIFY on changes (not on last-use), lifecycle."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from authz_service import keys, schema
from authz_service.model import KeyStatus
from authz_service.store import NOTIFY_CHANNEL, KeyStateError, PostgresKeyStore


async def test_migrations_are_versioned_and_idempotent(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await schema.migrate(conn)
        assert await schema.migrate(conn) == []  # nothing left to apply
        for path in schema.migration_files():  # and each file may run again harmlessly
            async with conn.transaction():
                await conn.execute(path.read_text())
        versions = [
            r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        ]
        own = [v for v in versions if "/" not in v]  # other services record theirs as <service>/<file>
        assert own == [p.stem for p in schema.migration_files()]
    finally:
        await conn.close()


async def test_changes_notify_the_key_hash_but_last_use_stays_silent(database_url: str) -> None:
    store = await PostgresKeyStore.connect(database_url, retry_seconds=5)
    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.put_nowait(args[-1]))
    try:
        key = keys.generate_key("sk_test")
        record = await store.create_key(key, "n", "o")
        assert await asyncio.wait_for(heard.get(), 2) == keys.hash_key(key)  # insert: drop negative entries
        await store.touch_last_used([record.id])
        await store.revoke(record.id)
        assert await asyncio.wait_for(heard.get(), 2) == keys.hash_key(key)
        assert heard.empty()  # the last-use update sent nothing
        refreshed = await store.find_by_id(record.id)
        assert refreshed is not None and refreshed.last_used_at is not None
    finally:
        await listener.close()
        await store.close()


async def test_rotation_copies_settings_and_schedules_the_old_key_end(database_url: str) -> None:
    store = await PostgresKeyStore.connect(database_url, retry_seconds=5)
    try:
        old = await store.create_key(
            keys.generate_key("sk_live"), "svc", "team", "pro", 5, None, ("embed", "usage")
        )
        before, new, new_key, _ = await store.rotate(old.id, timedelta(hours=1))
        assert keys.environment_of(new_key) == "live" and keys.hash_key(new_key) != new.id
        assert (new.name, new.owner, new.plan, new.rate_limit_minute, new.scopes) == (
            "svc", "team", "pro", 5, ("embed", "usage"),
        )  # fmt: skip
        assert before.replaced_by == new.id and before.status() is KeyStatus.ROTATING
        assert (await store.find_by_hash(keys.hash_key(new_key))) == new
        with pytest.raises(KeyStateError, match="already rotated"):
            await store.rotate(old.id, timedelta(0))
        with pytest.raises(LookupError):
            await store.rotate("key_0000000000000000", timedelta(0))
        revoked = await store.revoke(old.id)  # brings the end of the grace period forward
        assert revoked is not None and revoked.status() is KeyStatus.REVOKED
        assert await store.revoke("key_0000000000000000") is None
    finally:
        await store.close()


async def test_add_key_keeps_an_existing_key_untouched(database_url: str) -> None:
    store = await PostgresKeyStore.connect(database_url, retry_seconds=5)
    try:
        key = keys.generate_key("sk_dev")
        first = await store.add_key(key, name="dev", owner="dev_user")
        await store.revoke(first)
        assert await store.add_key(key, name="dev", owner="dev_user") == first
        record = await store.find_by_hash(keys.hash_key(key))
        assert record is not None and record.status() is KeyStatus.REVOKED  # a restart does not un-revoke
    finally:
        await store.close()


async def test_replicas_adding_one_dev_key_at_once_agree_on_it(database_url: str) -> None:
    key = keys.generate_key("sk_dev")
    stores = [await PostgresKeyStore.connect(database_url, retry_seconds=5) for _ in range(4)]
    try:
        ids = await asyncio.gather(*(store.add_key(key, name="dev", owner="dev_user") for store in stores))
    finally:
        for store in stores:
            await store.close()
    assert len(set(ids)) == 1

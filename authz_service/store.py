"""Postgres key store (asyncpg): lookups by key hash, and the key lifecycle (create, revoke, rotate)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg

from authz_service import keys, schema, signing
from authz_service.model import KEY_COLUMNS, KeyRecord
from authz_service.sealing import SecretBox

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "api_key_changes"  # see migrations/002_rotation_and_notify.sql

_SELECT_BY_HASH = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
_SELECT_BY_ID = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"
_INSERT = f"""
    INSERT INTO api_keys (id, key_hash, display_prefix, name, owner, environment, plan,
                          rate_limit_minute, rate_limit_hour, scopes, expires_at, allowed_ips,
                          signing_secret_enc, token_limit_per_minute, token_limit_per_day)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::cidr[], $13, $14, $15)
    RETURNING {KEY_COLUMNS}
"""


_USABLE = "(revoked_at IS NULL OR revoked_at > now()) AND (expires_at IS NULL OR expires_at > now())"


class KeyStateError(ValueError):
    """A lifecycle step that does not apply to the key in its current state."""


def new_key_id() -> str:
    return f"key_{secrets.token_hex(8)}"


class Rotation(NamedTuple):
    old: KeyRecord
    new: KeyRecord
    api_key: str  # the new key's plaintext, to show once
    signing_secret: str | None  # the new key's signing secret (signing keys only), to show once


def new_signing_secret(box: SecretBox, key_id: str) -> tuple[str, bytes]:
    """A signing secret for the key `key_id`: (the plaintext to show once, the sealed value to store)."""
    secret = signing.new_secret()
    return secret, box.seal(secret, key_id)


def to_record(row: asyncpg.Record) -> KeyRecord:
    allowed = tuple(str(network) for network in row["allowed_ips"])
    return KeyRecord(**{**dict(row), "scopes": tuple(row["scopes"]), "allowed_ips": allowed})


class PostgresKeyStore:
    def __init__(self, pool: asyncpg.Pool, dsn: str = "") -> None:
        self._pool = pool
        self.dsn = dsn  # for the LISTEN connection, which lives outside the pool

    @classmethod
    async def connect(cls, dsn: str, retry_seconds: float = 60.0, max_size: int = 4) -> PostgresKeyStore:
        """Connect (retrying while the database starts up) and apply pending migrations."""
        deadline = asyncio.get_running_loop().time() + retry_seconds
        while True:
            try:
                pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, timeout=5)
                break
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.info("waiting for Postgres: %s", exc)
                await asyncio.sleep(0.5)
        store = cls(pool, dsn)
        async with pool.acquire() as conn:
            await schema.migrate(conn)
        return store

    async def find_by_hash(self, key_hash: str, timeout: float | None = None) -> KeyRecord | None:
        """The key with this hash or None. `timeout` bounds waiting for a connection and the query."""
        async with self._pool.acquire(timeout=timeout) as conn:
            row = await conn.fetchrow(_SELECT_BY_HASH, key_hash, timeout=timeout)
        return None if row is None else to_record(row)

    async def find_by_id(self, key_id: str) -> KeyRecord | None:
        row = await self._pool.fetchrow(_SELECT_BY_ID, key_id)
        return None if row is None else to_record(row)

    async def create_key(
        self,
        key: str,
        name: str,
        owner: str,
        plan: str = "free",
        rate_limit_minute: int | None = None,
        rate_limit_hour: int | None = None,
        scopes: Iterable[str] = (),
        expires_at: datetime | None = None,
        conn: asyncpg.Connection | None = None,
        allowed_ips: Iterable[str] = (),
        key_id: str | None = None,
        signing_secret_enc: bytes | None = None,
        token_limit_per_minute: int | None = None,
        token_limit_per_day: int | None = None,
    ) -> KeyRecord:
        """Store a new key (by hash only) and return its record. A signing key's secret arrives
        sealed for `key_id` (see new_signing_secret)."""
        row = await (conn or self._pool).fetchrow(
            _INSERT,
            key_id or new_key_id(),
            keys.hash_key(key),
            keys.display_prefix(key),
            name,
            owner,
            keys.environment_of(key),
            plan,
            rate_limit_minute,
            rate_limit_hour,
            list(scopes),
            expires_at,
            list(allowed_ips),
            signing_secret_enc,
            token_limit_per_minute,
            token_limit_per_day,
        )
        return to_record(row)

    async def add_key(
        self,
        key: str,
        name: str,
        owner: str,
        plan: str = "free",
        rate_limit_minute: int | None = None,
        rate_limit_hour: int | None = None,
        scopes: tuple[str, ...] = (),
        expires_at: datetime | None = None,
    ) -> str:
        """Store `key` unless it exists (the dev key on every start); its id either way, state untouched."""
        async with self._pool.acquire() as conn, conn.transaction():
            # Replicas starting together with one TEST_API_KEY: the second waits and finds the first's
            # row instead of failing on the unique key_hash (which crashed a replica at start).
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", keys.hash_key(key))
            key_id = await conn.fetchval("SELECT id FROM api_keys WHERE key_hash = $1", keys.hash_key(key))
            if key_id is not None:
                return str(key_id)
            record = await self.create_key(
                key, name, owner, plan, rate_limit_minute, rate_limit_hour, scopes, expires_at, conn
            )
            return record.id

    async def list_keys(self, include_inactive: bool = True) -> list[KeyRecord]:
        where = "" if include_inactive else f"WHERE {_USABLE}"
        rows = await self._pool.fetch(f"SELECT {KEY_COLUMNS} FROM api_keys {where} ORDER BY created_at, id")
        return [to_record(row) for row in rows]

    async def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke now (or bring a pending rotation's end forward). None when there is no such key."""
        row = await self._pool.fetchrow(
            f"UPDATE api_keys SET revoked_at = LEAST(revoked_at, now())"
            f" WHERE id = $1 RETURNING {KEY_COLUMNS}",
            key_id,
        )
        return None if row is None else to_record(row)

    async def rotate(self, key_id: str, grace: timedelta, box: SecretBox | None = None) -> Rotation:
        """Issue a new key with the old key's settings; the old one stops working after `grace`.

        A signing key's replacement gets a new signing secret too (sealed with `box`). Raises
        LookupError for an unknown id and KeyStateError for a key that is revoked, expired or
        already rotated, or a signing key without a master key to seal its new secret.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE", key_id)
            if row is None:
                raise LookupError(key_id)
            old = to_record(row)
            if old.replaced_by is not None:
                raise KeyStateError(f"key {key_id} was already rotated; rotate {old.replaced_by} instead")
            if old.is_revoked() or old.is_expired():
                raise KeyStateError(f"key {key_id} is {old.status()}; create a new key instead")
            new_key = keys.generate_key(keys.prefix_for(old.environment))
            new_id, secret, sealed = new_key_id(), None, None
            if old.signing:
                if box is None:
                    raise KeyStateError(f"key {key_id} signs requests: set SIGNING_MASTER_KEY to rotate it")
                secret, sealed = new_signing_secret(box, new_id)
            new = await self.create_key(
                new_key, old.name, old.owner, old.plan, old.rate_limit_minute, old.rate_limit_hour,
                old.scopes, old.expires_at, conn, old.allowed_ips, new_id, sealed,
                old.token_limit_per_minute, old.token_limit_per_day,
            )  # fmt: skip
            row = await conn.fetchrow(
                f"UPDATE api_keys SET replaced_by = $2, revoked_at = now() + $3::interval"
                f" WHERE id = $1 RETURNING {KEY_COLUMNS}",
                key_id,
                new.id,
                grace,
            )
            return Rotation(to_record(row), new, new_key, secret)

    async def touch_last_used(self, key_ids: Iterable[str]) -> None:
        """One UPDATE for a batch of keys seen since the last flush (silent: no NOTIFY)."""
        await self._pool.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::text[])", list(key_ids)
        )

    async def close(self) -> None:
        await self._pool.close()

"""Postgres key store (asyncpg): versioned migrations and lookups by key hash."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from authz_service import keys

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only serialises concurrent migrators (several replicas starting).
MIGRATION_LOCK_ID = 0x6B657973


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    owner: str
    environment: str
    plan: str
    rate_limit_minute: int | None
    rate_limit_hour: int | None
    scopes: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None

    def is_revoked(self) -> bool:
        return self.revoked_at is not None and self.revoked_at <= datetime.now(UTC)

    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)


_SELECT_BY_HASH = """
    SELECT id, name, owner, environment, plan, rate_limit_minute, rate_limit_hour,
           scopes, expires_at, revoked_at
    FROM api_keys WHERE key_hash = $1
"""


def new_key_id() -> str:
    return f"key_{secrets.token_hex(8)}"


class PostgresKeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, retry_seconds: float = 60.0) -> PostgresKeyStore:
        """Connect (retrying while the database starts up) and apply pending migrations."""
        deadline = asyncio.get_running_loop().time() + retry_seconds
        while True:
            try:
                pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, timeout=5)
                break
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.info("waiting for Postgres: %s", exc)
                await asyncio.sleep(0.5)
        store = cls(pool)
        await store.migrate()
        return store

    async def migrate(self) -> list[str]:
        """Apply migrations/NNN_*.sql not yet recorded, in order, each in its own transaction."""
        applied: list[str] = []
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                    if path.stem in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(path.read_text())
                        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.stem)
                    applied.append(path.stem)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        return applied

    async def find_by_hash(self, key_hash: str) -> KeyRecord | None:
        row = await self._pool.fetchrow(_SELECT_BY_HASH, key_hash)
        if row is None:
            return None
        return KeyRecord(**{**dict(row), "scopes": tuple(row["scopes"])})

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
        """Store a new key (by hash) and return its id; an existing identical key keeps its id and state."""
        key_id = await self._pool.fetchval(
            """
            INSERT INTO api_keys (id, key_hash, display_prefix, name, owner, environment, plan,
                                  rate_limit_minute, rate_limit_hour, scopes, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (key_hash) DO UPDATE SET key_hash = EXCLUDED.key_hash
            RETURNING id
            """,
            new_key_id(),
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
        )
        return str(key_id)

    async def close(self) -> None:
        await self._pool.close()

"""Versioned SQL migrations: <folder>/NNN_*.sql applied once each, in order, each in its own
transaction, recorded in the shared `schema_migrations` table.

Every service that owns tables (the key store, the usage records) runs its own folder with its
own advisory lock and version prefix, so their numberings never collide.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)


def migration_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("[0-9][0-9][0-9]_*.sql"))


async def migrate(conn: asyncpg.Connection, folder: Path, lock_id: int, prefix: str = "") -> list[str]:
    """Apply the migrations of `folder` not yet recorded (as `prefix` + file stem); the versions
    applied now (empty when the schema is current). `lock_id` serialises concurrent starts."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", lock_id)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in migration_files(folder):
            version = prefix + path.stem
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_id)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied

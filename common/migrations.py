"""Versioned SQL migrations: <folder>/NNN_*.sql applied once each, in order, each in its own
transaction, recorded in the shared `schema_migrations` table.

Every service that owns tables (the key store, the usage records) runs its own folder with its
own version prefix, so their numberings never collide. All of them take one advisory lock: they
share `schema_migrations`, and two sessions racing `CREATE TABLE IF NOT EXISTS` on an empty
database can fail (a unique violation in the catalog), which made a container crash at start.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

LOCK_ID = 0x6D696772  # "migr": serialises every migrator of every service on one database


def migration_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("[0-9][0-9][0-9]_*.sql"))


async def migrate(conn: asyncpg.Connection, folder: Path, prefix: str = "") -> list[str]:
    """Apply the migrations of `folder` not yet recorded (as `prefix` + file stem); the versions
    applied now (empty when the schema is current)."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
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
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied

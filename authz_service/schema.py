"""Versioned schema migrations: migrations/NNN_*.sql applied once each, in order, on start."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only serialises concurrent migrators (several replicas starting).
MIGRATION_LOCK_ID = 0x6B657973


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet recorded in schema_migrations, each in its own transaction.

    Returns the versions applied now (empty when the schema is current). The files are
    idempotent as well, so a half-recorded history cannot break a start.
    """
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in migration_files():
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

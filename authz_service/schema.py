"""The key store's schema: migrations/NNN_*.sql applied once each, in order, on start
(common.migrations; the files are idempotent as well, so a half-recorded history cannot break a start)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from common import migrations

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def migration_files() -> list[Path]:
    return migrations.migration_files(MIGRATIONS_DIR)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """The versions applied now (bare file names; empty when the schema is current)."""
    return await migrations.migrate(conn, MIGRATIONS_DIR)

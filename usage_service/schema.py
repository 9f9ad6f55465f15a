"""The usage tables: migrations/NNN_*.sql applied once each, in order, recorded as usage/<file>
in the schema_migrations table the key service also uses (its versions are bare file names)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from common import migrations

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


async def migrate(conn: asyncpg.Connection) -> list[str]:
    return await migrations.migrate(conn, MIGRATIONS_DIR, prefix="usage/")

"""Every service's migrations on one empty database at the same time (a compose start: the authz
replicas, the key API and the usage service all migrate at once) leave one complete schema."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from authz_service import schema as key_schema
from usage_service import schema as usage_schema


async def test_all_migrators_at_once_on_empty_databases(database_url: str) -> None:
    admin = await asyncpg.connect(database_url)
    try:
        for _ in range(5):  # the catalog race showed about one start in three
            name = f"migrate_{secrets.token_hex(4)}"
            await admin.execute(f"CREATE DATABASE {name}")
            url = database_url.rsplit("/", 1)[0] + f"/{name}"
            conns = [await asyncpg.connect(url) for _ in range(4)]
            try:
                migrators = [
                    key_schema.migrate,
                    usage_schema.migrate,
                    key_schema.migrate,
                    usage_schema.migrate,
                ]
                applied = await asyncio.gather(*(m(c) for m, c in zip(migrators, conns, strict=True)))
                versions = {
                    r["version"] for r in await conns[0].fetch("SELECT version FROM schema_migrations")
                }
            finally:
                for conn in conns:
                    await conn.close()
                await admin.execute(f"DROP DATABASE {name}")
            # Each version applied exactly once, by one of the two migrators of its service.
            assert sorted(v for run in applied for v in run) == sorted(versions)
            assert {v for v in versions if v.startswith("usage/")} and {v for v in versions if "/" not in v}
    finally:
        await admin.close()

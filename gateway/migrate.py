"""Schema migrations: ordered plain-SQL files in ``gateway/migrations``.

Files are named ``NNNN_description.sql`` and applied in order, each in its own
transaction, recording its version in ``schema_migrations``. The whole run holds
a Postgres advisory lock, so replicas that migrate at the same time apply each
file exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from gateway import backends
from gateway.config import Config

# Arbitrary constant identifying this gateway's migration lock.
MIGRATION_LOCK_ID = 0x4D0B1A57
_NAME = re.compile(r"([0-9]{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("gateway.migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(
                Migration(
                    version=int(match.group(1)),
                    name=match.group(2),
                    sql=entry.read_text(encoding="utf-8"),
                )
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def apply_migrations(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every pending migration; return those applied by this call."""
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied


async def migrate(database_url: str) -> list[Migration]:
    """Apply pending migrations over a connection of its own (tests, ``dev``)."""
    conn = await asyncpg.connect(database_url)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


async def migrate_configured(config: Config) -> list[Migration]:
    """Apply pending migrations over a connection built like the server's
    (:func:`gateway.backends.connect`, with the configured timeouts)."""
    conn = await backends.connect(config)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()

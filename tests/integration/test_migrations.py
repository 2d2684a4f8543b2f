"""Migrations apply cleanly to an empty database, once, even when run concurrently."""

import asyncio
import secrets

import asyncpg

from gateway.migrate import apply_migrations, load_migrations, migrate


async def _fresh_database(backends) -> tuple[str, str]:
    name = "migr_" + secrets.token_hex(4)
    admin = await asyncpg.connect(backends.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = backends.database_url.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def _drop(backends, name: str) -> None:
    admin = await asyncpg.connect(backends.database_url)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def test_migration_files_are_ordered_and_unique() -> None:
    migrations = load_migrations()
    assert migrations, "no migrations found"
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


async def test_apply_to_empty_database_then_again(backends) -> None:
    name, url = await _fresh_database(backends)
    try:
        applied = await migrate(url)
        assert [m.version for m in applied] == [m.version for m in load_migrations()]
        assert await migrate(url) == []
        conn = await asyncpg.connect(url)
        try:
            tables = {
                r["tablename"]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public'"
                )
            }
        finally:
            await conn.close()
        assert {
            "projects",
            "job_claims",
            "artifacts",
            "pending_uploads",
            "object_deletions",
            "idempotency_keys",
            "signed_url_mints",
            "events",
            "schema_migrations",
        } <= tables
    finally:
        await _drop(backends, name)


async def test_concurrent_migrations_apply_each_file_once(backends) -> None:
    name, url = await _fresh_database(backends)
    try:
        conns = [await asyncpg.connect(url) for _ in range(3)]
        try:
            results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        finally:
            for c in conns:
                await c.close()
        applied_counts = sorted(len(r) for r in results)
        assert applied_counts == [0, 0, len(load_migrations())]
    finally:
        await _drop(backends, name)
